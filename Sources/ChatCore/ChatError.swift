/// Domain failures. The HTTP layer maps each case to one status code, in one place.
public enum ChatError: Error, Sendable, Equatable {
    /// A resource named in the path does not exist (404).
    case notFound(String)
    /// The caller may not do this (403).
    case forbidden(String)
    /// The input is invalid, including unknown ids referenced from a body (422).
    case invalid(String)
    /// Well-formed but not allowed in the resource's current state (400).
    case notAllowed(String)
    /// Conflicts with existing data, such as a taken user name (409).
    case conflict(String)
    /// Credentials were wrong or the account cannot be used (401).
    case unauthorized(String)
}
