// The OpenAPI 3 document served at GET /openapi.json. Keep it in step with the routes.
enum OpenAPIDocument {
    static let json = #"""
{
 "openapi": "3.0.3",
 "info": {
  "title": "Chat API",
  "version": "0.1.0",
  "description": "PostgreSQL-backed chat server. Every path also works without its trailing slash. Errors are {\"detail\": \"...\"}. Timestamps are UTC ISO 8601 with Z. WebSockets (not describable in OpenAPI 3): ws /chat/ws/{room_id}?token=JWT[&last_message_id=N | &last_seq=N] and ws /chat/ws?token=JWT; every room change frame carries the room's change number seq, last_seq=N replays every change after N (or sends one resync_required frame when N is outside the kept window); frames and close codes are in the README and API.md."
 },
 "paths": {
  "/health": {
   "get": {
    "summary": "Process is alive",
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Status"
        }
       }
      }
     }
    }
   }
  },
  "/ready": {
   "get": {
    "summary": "Database is reachable",
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Status"
        }
       }
      }
     },
     "503": {
      "description": "Database unreachable",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/metrics": {
   "get": {
    "summary": "Prometheus metrics",
    "responses": {
     "200": {
      "description": "Prometheus text format",
      "content": {
       "text/plain": {
        "schema": {
         "type": "string"
        }
       }
      }
     }
    }
   }
  },
  "/openapi.json": {
   "get": {
    "summary": "This document",
    "responses": {
     "200": {
      "description": "OpenAPI 3 document"
     }
    }
   }
  },
  "/auth/register": {
   "post": {
    "summary": "Create an account",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/RegisterRequest"
       }
      }
     }
    },
    "responses": {
     "201": {
      "description": "Created",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/RegisterResponse"
        }
       }
      }
     },
     "409": {
      "description": "user_name taken",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/auth/login": {
   "post": {
    "summary": "Get an access token",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/RegisterRequest"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/LoginResponse"
        }
       }
      }
     },
     "401": {
      "description": "Wrong user name or password",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/auth/me": {
   "get": {
    "summary": "The caller",
    "security": [
     {
      "bearer": []
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Me"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/": {
   "get": {
    "summary": "The caller's rooms, most recent activity first",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "page",
      "in": "query",
      "required": false,
      "description": "1-based page",
      "schema": {
       "type": "integer",
       "default": 1,
       "minimum": 1
      }
     },
     {
      "name": "size",
      "in": "query",
      "required": false,
      "description": "page size",
      "schema": {
       "type": "integer",
       "default": 100,
       "minimum": 1,
       "maximum": 500
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/RoomList"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   },
   "post": {
    "summary": "Create a room (a direct room that exists is returned with 200)",
    "security": [
     {
      "bearer": []
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/CreateRoomRequest"
       }
      }
     }
    },
    "responses": {
     "201": {
      "description": "Created",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/RoomSummary"
        }
       }
      }
     },
     "200": {
      "description": "Existing direct room",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/RoomSummary"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/": {
   "get": {
    "summary": "Room detail",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/RoomDetail"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/participants/": {
   "get": {
    "summary": "Active participants",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ParticipantList"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   },
   "post": {
    "summary": "Add users to a group room",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/AddParticipantsRequest"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ParticipantList"
        }
       }
      }
     },
     "400": {
      "description": "Direct room, or the room is full",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/participants/{user_id}/": {
   "delete": {
    "summary": "Leave, or (creator) remove a participant",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     },
     {
      "name": "user_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ParticipantList"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/messages/": {
   "get": {
    "summary": "History, newest first (after_id: oldest first)",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     },
     {
      "name": "page",
      "in": "query",
      "required": false,
      "description": "1-based page",
      "schema": {
       "type": "integer",
       "default": 1,
       "minimum": 1
      }
     },
     {
      "name": "size",
      "in": "query",
      "required": false,
      "description": "page size",
      "schema": {
       "type": "integer",
       "default": 50,
       "minimum": 1,
       "maximum": 100
      }
     },
     {
      "name": "before_id",
      "in": "query",
      "required": false,
      "description": "messages with id < before_id",
      "schema": {
       "type": "integer"
      }
     },
     {
      "name": "after_id",
      "in": "query",
      "required": false,
      "description": "messages with id > after_id, oldest first",
      "schema": {
       "type": "integer"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/MessageList"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   },
   "post": {
    "summary": "Send a message: JSON text/location, or multipart/form-data upload (client_message_id repeats return the first with 200)",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/SendMessageRequest"
       }
      },
      "multipart/form-data": {
       "schema": {
        "$ref": "#/components/schemas/UploadForm"
       }
      }
     }
    },
    "responses": {
     "201": {
      "description": "Created",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Message"
        }
       }
      }
     },
     "200": {
      "description": "Repeat of a client_message_id",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Message"
        }
       }
      }
     },
     "413": {
      "description": "Body or upload too large (MAX_UPLOAD_BYTES)",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/messages/{message_id}/": {
   "put": {
    "summary": "Edit (sender only)",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     },
     {
      "name": "message_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/EditMessageRequest"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Message"
        }
       }
      }
     },
     "400": {
      "description": "Message is deleted",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   },
   "delete": {
    "summary": "Soft delete (sender only, idempotent)",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     },
     {
      "name": "message_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Message"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/read/": {
   "post": {
    "summary": "Mark read (up to message_id if given)",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "requestBody": {
     "required": false,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/ReadRequest"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ReadResponse"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room or message not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/search/": {
   "get": {
    "summary": "Search a room's messages (prefix words; Korean infix for 2+ syllables), newest first",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     },
     {
      "name": "query",
      "in": "query",
      "required": true,
      "schema": {
       "type": "string",
       "minLength": 1,
       "maxLength": 200
      }
     },
     {
      "name": "page",
      "in": "query",
      "schema": {
       "type": "integer",
       "default": 1,
       "minimum": 1
      }
     },
     {
      "name": "size",
      "in": "query",
      "schema": {
       "type": "integer",
       "default": 20,
       "minimum": 1,
       "maximum": 100
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/SearchResults"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/search/": {
   "get": {
    "summary": "Search every room of the caller",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "query",
      "in": "query",
      "required": true,
      "schema": {
       "type": "string",
       "minLength": 1,
       "maxLength": 200
      }
     },
     {
      "name": "page",
      "in": "query",
      "schema": {
       "type": "integer",
       "default": 1,
       "minimum": 1
      }
     },
     {
      "name": "size",
      "in": "query",
      "schema": {
       "type": "integer",
       "default": 20,
       "minimum": 1,
       "maximum": 100
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/SearchResults"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/chat/rooms/{room_id}/settings/": {
   "get": {
    "summary": "Settings as the caller sees them",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Settings"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   },
   "put": {
    "summary": "Partial update",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/SettingsUpdate"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Settings"
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant / not allowed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "422": {
      "description": "Validation failed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/uploads/{name}": {
   "get": {
    "summary": "A stored upload (file_url); supports Range, ETag, If-None-Match, If-Modified-Since",
    "parameters": [
     {
      "name": "name",
      "in": "path",
      "required": true,
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "Range",
      "in": "header",
      "schema": {
       "type": "string"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "The file"
     },
     "206": {
      "description": "A byte range"
     },
     "304": {
      "description": "Not modified"
     },
     "404": {
      "description": "No such file",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "416": {
      "description": "Range not satisfiable"
     }
    }
   }
  },
  "/chat/rooms/{room_id}/online-status/": {
   "get": {
    "summary": "Presence of every active participant (shared by all instances)",
    "description": "is_online: the user has at least one open WebSocket on any live instance. last_seen: now-ish while online, the time the last socket closed while offline, null if never connected.",
    "security": [
     {
      "bearer": []
     }
    ],
    "parameters": [
     {
      "name": "room_id",
      "in": "path",
      "required": true,
      "schema": {
       "type": "integer",
       "format": "int64"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "OK",
      "content": {
       "application/json": {
        "schema": {
         "type": "array",
         "items": {
          "$ref": "#/components/schemas/OnlineStatus"
         }
        }
       }
      }
     },
     "401": {
      "description": "Missing, invalid or expired token",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "Not a participant",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Room not found",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  }
 },
 "components": {
  "schemas": {
   "Error": {
    "type": "object",
    "required": [
     "detail"
    ],
    "properties": {
     "detail": {
      "type": "string"
     }
    }
   },
   "RegisterRequest": {
    "type": "object",
    "required": [
     "user_name",
     "password"
    ],
    "properties": {
     "user_name": {
      "type": "string",
      "minLength": 1,
      "maxLength": 50
     },
     "password": {
      "type": "string",
      "minLength": 8,
      "maxLength": 128
     }
    }
   },
   "RegisterResponse": {
    "type": "object",
    "properties": {
     "user_id": {
      "type": "integer",
      "format": "int64"
     },
     "user_name": {
      "type": "string"
     },
     "created_at": {
      "type": "string",
      "format": "date-time"
     }
    }
   },
   "LoginResponse": {
    "type": "object",
    "properties": {
     "access_token": {
      "type": "string"
     },
     "token_type": {
      "type": "string",
      "enum": [
       "bearer"
      ]
     },
     "expires_in": {
      "type": "integer"
     },
     "user_id": {
      "type": "integer",
      "format": "int64"
     },
     "user_name": {
      "type": "string"
     }
    }
   },
   "Me": {
    "type": "object",
    "properties": {
     "user_id": {
      "type": "integer",
      "format": "int64"
     },
     "user_name": {
      "type": "string"
     }
    }
   },
   "RoomSummary": {
    "type": "object",
    "properties": {
     "room_id": {
      "type": "integer",
      "format": "int64"
     },
     "room_name": {
      "type": "string"
     },
     "room_type": {
      "type": "string",
      "enum": [
       "direct",
       "group"
      ]
     },
     "created_by": {
      "type": "integer",
      "format": "int64"
     },
     "is_active": {
      "type": "boolean"
     },
     "created_at": {
      "type": "string",
      "format": "date-time"
     },
     "updated_at": {
      "type": "string",
      "format": "date-time"
     },
     "participant_count": {
      "type": "integer"
     },
     "last_message": {
      "type": "string",
      "nullable": true
     },
     "unread_count": {
      "type": "integer"
     }
    }
   },
   "RoomList": {
    "type": "object",
    "properties": {
     "rooms": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/RoomSummary"
      }
     },
     "total_count": {
      "type": "integer"
     }
    }
   },
   "CreateRoomRequest": {
    "type": "object",
    "required": [
     "room_type"
    ],
    "properties": {
     "room_name": {
      "type": "string",
      "minLength": 1,
      "maxLength": 100,
      "description": "Required for group rooms; an unnamed direct room shows each participant the other participant's name."
     },
     "room_type": {
      "type": "string",
      "enum": [
       "direct",
       "group"
      ]
     },
     "room_description": {
      "type": "string",
      "maxLength": 500
     },
     "participant_ids": {
      "type": "array",
      "maxItems": 10000,
      "items": {
       "type": "integer",
       "format": "int64"
      }
     },
     "max_participants": {
      "type": "integer",
      "minimum": 2,
      "maximum": 10000,
      "default": 100,
      "description": "Group rooms only (ignored for direct rooms): the most active participants the room may have; below the number of participants given is 422."
     }
    }
   },
   "RoomDetail": {
    "type": "object",
    "properties": {
     "room_id": {
      "type": "integer",
      "format": "int64"
     },
     "room_name": {
      "type": "string"
     },
     "room_type": {
      "type": "string",
      "enum": [
       "direct",
       "group"
      ]
     },
     "room_description": {
      "type": "string",
      "nullable": true
     },
     "max_participants": {
      "type": "integer"
     },
     "created_by": {
      "type": "integer",
      "format": "int64"
     },
     "is_active": {
      "type": "boolean"
     },
     "created_at": {
      "type": "string",
      "format": "date-time"
     },
     "updated_at": {
      "type": "string",
      "format": "date-time"
     },
     "seq": {
      "type": "integer",
      "format": "int64",
      "description": "The room's newest change number: open ws /chat/ws/{room_id}?last_seq=<seq> after loading history to go live without a gap."
     }
    }
   },
   "Participant": {
    "type": "object",
    "properties": {
     "id": {
      "type": "integer",
      "format": "int64"
     },
     "room_id": {
      "type": "integer",
      "format": "int64"
     },
     "user_id": {
      "type": "integer",
      "format": "int64"
     },
     "user_name": {
      "type": "string"
     },
     "joined_at": {
      "type": "string",
      "format": "date-time"
     },
     "last_read_at": {
      "type": "string",
      "format": "date-time",
      "nullable": true
     },
     "is_active": {
      "type": "boolean"
     }
    }
   },
   "ParticipantList": {
    "type": "object",
    "properties": {
     "participants": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/Participant"
      }
     },
     "total_count": {
      "type": "integer"
     }
    }
   },
   "AddParticipantsRequest": {
    "type": "object",
    "required": [
     "user_ids"
    ],
    "properties": {
     "user_ids": {
      "type": "array",
      "items": {
       "type": "integer",
       "format": "int64"
      }
     }
    }
   },
   "Message": {
    "type": "object",
    "properties": {
     "message_id": {
      "type": "integer",
      "format": "int64"
     },
     "room_id": {
      "type": "integer",
      "format": "int64"
     },
     "sender_id": {
      "type": "integer",
      "format": "int64"
     },
     "sender_name": {
      "type": "string"
     },
     "message_content": {
      "type": "string",
      "nullable": true
     },
     "message_type": {
      "type": "string",
      "enum": [
       "text",
       "image",
       "file",
       "voice",
       "location"
      ]
     },
     "file_url": {
      "type": "string",
      "nullable": true
     },
     "file_name": {
      "type": "string",
      "nullable": true
     },
     "file_size": {
      "type": "integer",
      "nullable": true
     },
     "reply_to_message_id": {
      "type": "integer",
      "format": "int64",
      "nullable": true
     },
     "client_message_id": {
      "type": "string",
      "description": "Present only when the sender gave one."
     },
     "is_edited": {
      "type": "boolean"
     },
     "is_deleted": {
      "type": "boolean"
     },
     "edited_at": {
      "type": "string",
      "format": "date-time",
      "nullable": true
     },
     "created_at": {
      "type": "string",
      "format": "date-time"
     },
     "updated_at": {
      "type": "string",
      "format": "date-time"
     }
    }
   },
   "MessageList": {
    "type": "object",
    "properties": {
     "messages": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/Message"
      }
     },
     "total_count": {
      "type": "integer"
     },
     "has_more": {
      "type": "boolean"
     }
    }
   },
   "SendMessageRequest": {
    "type": "object",
    "required": [
     "message_content"
    ],
    "properties": {
     "message_content": {
      "type": "string",
      "maxLength": 10000
     },
     "message_type": {
      "type": "string",
      "enum": [
       "text",
       "location"
      ],
      "default": "text"
     },
     "reply_to_message_id": {
      "type": "integer",
      "format": "int64"
     },
     "client_message_id": {
      "type": "string",
      "maxLength": 64
     }
    }
   },
   "EditMessageRequest": {
    "type": "object",
    "required": [
     "message_content"
    ],
    "properties": {
     "message_content": {
      "type": "string",
      "maxLength": 10000
     }
    }
   },
   "ReadRequest": {
    "type": "object",
    "properties": {
     "message_id": {
      "type": "integer",
      "format": "int64"
     }
    }
   },
   "ReadResponse": {
    "type": "object",
    "properties": {
     "room_id": {
      "type": "integer",
      "format": "int64"
     },
     "user_id": {
      "type": "integer",
      "format": "int64"
     },
     "last_read_at": {
      "type": "string",
      "format": "date-time",
      "nullable": true
     },
     "unread_count": {
      "type": "integer"
     }
    }
   },
   "Status": {
    "type": "object",
    "properties": {
     "status": {
      "type": "string"
     }
    }
   },
   "SearchHit": {
    "type": "object",
    "properties": {
     "message_id": {
      "type": "integer",
      "format": "int64"
     },
     "room_id": {
      "type": "integer",
      "format": "int64",
      "description": "Only in GET /chat/search/"
     },
     "sender_name": {
      "type": "string"
     },
     "message_content": {
      "type": "string"
     },
     "created_at": {
      "type": "string",
      "format": "date-time"
     },
     "highlight": {
      "type": "string",
      "description": "The matching words of the message, separated by spaces"
     }
    }
   },
   "SearchResults": {
    "type": "object",
    "properties": {
     "messages": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/SearchHit"
      }
     },
     "total_count": {
      "type": "integer"
     },
     "has_more": {
      "type": "boolean"
     }
    }
   },
   "Settings": {
    "type": "object",
    "properties": {
     "room_id": {
      "type": "integer",
      "format": "int64"
     },
     "notification_enabled": {
      "type": "boolean",
      "default": true
     },
     "message_retention_days": {
      "type": "integer",
      "minimum": 1,
      "maximum": 3650,
      "default": 365
     },
     "auto_delete_enabled": {
      "type": "boolean",
      "default": false
     },
     "read_receipt_enabled": {
      "type": "boolean",
      "default": true
     }
    }
   },
   "SettingsUpdate": {
    "type": "object",
    "description": "Partial: only the fields present change. message_retention_days and auto_delete_enabled: room creator only.",
    "properties": {
     "notification_enabled": {
      "type": "boolean",
      "default": true
     },
     "message_retention_days": {
      "type": "integer",
      "minimum": 1,
      "maximum": 3650,
      "default": 365
     },
     "auto_delete_enabled": {
      "type": "boolean",
      "default": false
     },
     "read_receipt_enabled": {
      "type": "boolean",
      "default": true
     }
    }
   },
   "UploadForm": {
    "type": "object",
    "required": [
     "file"
    ],
    "properties": {
     "file": {
      "type": "string",
      "format": "binary"
     },
     "message_type": {
      "type": "string",
      "enum": [
       "image",
       "file",
       "voice"
      ],
      "default": "file"
     },
     "message_content": {
      "type": "string",
      "description": "Optional caption"
     },
     "reply_to_message_id": {
      "type": "integer",
      "format": "int64"
     },
     "client_message_id": {
      "type": "string",
      "maxLength": 64
     }
    }
   },
   "OnlineStatus": {
    "type": "object",
    "required": [
     "user_id",
     "user_name",
     "is_online",
     "last_seen"
    ],
    "properties": {
     "user_id": {
      "type": "integer",
      "format": "int64"
     },
     "user_name": {
      "type": "string"
     },
     "is_online": {
      "type": "boolean"
     },
     "last_seen": {
      "type": "string",
      "format": "date-time",
      "nullable": true
     }
    }
   }
  },
  "securitySchemes": {
   "bearer": {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT"
   }
  }
 }
}
"""#
}
