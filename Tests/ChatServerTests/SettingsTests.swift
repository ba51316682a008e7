import Foundation
import Testing

@Suite struct SettingsTests {
    @Test func defaultsPartialUpdatesAndPermissions() async throws {
        try await withApp { api in
            let (owner, member, outsider) = (try await api.makeUser(), try await api.makeUser(), try await api.makeUser())
            let room = try await api.makeGroup(owner, with: [member])
            let path = "/chat/rooms/\(room)/settings/"

            let defaults = try await api.request(.get, path, token: member.token)
            #expect(defaults.status == .ok)
            expectKeys(
                defaults.object,
                ["room_id", "notification_enabled", "message_retention_days", "auto_delete_enabled", "read_receipt_enabled"])
            #expect(defaults.int("room_id") == room)
            #expect(defaults["notification_enabled"] as? Bool == true)
            #expect(defaults.int("message_retention_days") == 365)
            #expect(defaults["auto_delete_enabled"] as? Bool == false)
            #expect(defaults["read_receipt_enabled"] as? Bool == true)

            // Personal fields: each participant has their own.
            let personal = try await api.request(.put, path, token: member.token, json: ["notification_enabled": false])
            #expect(personal.status == .ok, "\(personal.raw)")
            #expect(personal["notification_enabled"] as? Bool == false)
            #expect(personal["read_receipt_enabled"] as? Bool == true)  // untouched
            #expect(try await api.request(.get, path, token: owner.token)["notification_enabled"] as? Bool == true)

            // Room-wide fields: creator only, in range.
            let denied = try await api.request(.put, path, token: member.token, json: ["message_retention_days": 30])
            #expect(denied.status == .forbidden)
            for days in [0, 3651, -1] {
                let invalid = try await api.request(.put, path, token: owner.token, json: ["message_retention_days": days])
                #expect(invalid.status == .unprocessableContent, "\(days)")
            }
            #expect(
                try await api.request(.put, path, token: owner.token, json: ["auto_delete_enabled": "yes"]).status
                    == .unprocessableContent)
            let roomWide = try await api.request(
                .put, "/chat/rooms/\(room)/settings", token: owner.token,
                json: ["message_retention_days": 30, "auto_delete_enabled": true])
            #expect(roomWide.status == .ok)
            #expect(roomWide.int("message_retention_days") == 30)
            let seenByMember = try await api.request(.get, path, token: member.token)
            #expect(seenByMember.int("message_retention_days") == 30)
            #expect(seenByMember["auto_delete_enabled"] as? Bool == true)
            #expect(seenByMember["notification_enabled"] as? Bool == false)

            #expect(try await api.request(.get, path, token: outsider.token).status == .forbidden)
            #expect(try await api.request(.put, path, token: outsider.token, json: ["notification_enabled": true]).status == .forbidden)
            #expect(try await api.request(.get, "/chat/rooms/9000000000000/settings/", token: owner.token).status == .notFound)
        }
    }
}
