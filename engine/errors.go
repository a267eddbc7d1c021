package engine

import "errors"

// Kind classifies an Error: what a front end tells its client.
type Kind uint8

// Error kinds; server maps them to HTTP statuses.
const (
	// Invalid: the request is wrong (HTTP 400).
	Invalid Kind = iota + 1
	// NotFound: it names something that does not exist (404).
	NotFound
	// Unavailable: the engine cannot answer yet (503): no snapshot, no
	// state store.
	Unavailable
	// Conflict: the request conflicts with the engine's state (409): a bad
	// snapshot, no config file to reload.
	Conflict
	// TooLarge: too much in one request (413).
	TooLarge
	// Unauthorized: a keyless write that is not a valid beacon (401).
	Unauthorized
)

// Error is an error a client caused or can act on: its Code and Message
// go to the client as they are. Any other error an Engine returns is
// internal.
type Error struct {
	Kind    Kind
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(kind Kind, code, message string) error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// badParam is the error of a bad request parameter: "name: why".
func badParam(name, why string) error { return errorf(Invalid, "bad_parameter", name+": "+why) }

// Errors of every door.
var (
	// ErrNoSnapshot: no index snapshot is loaded yet.
	ErrNoSnapshot = errorf(Unavailable, "no_snapshot", "no index snapshot is loaded yet")
	// ErrNoState: the engine was made without a state store.
	ErrNoState = errorf(Unavailable, "no_state", "this server has no state store")
	// ErrUnauthorized: a keyless write that is not a beacon this engine
	// signed.
	ErrUnauthorized = errorf(Unauthorized, "unauthorized", "missing or wrong API key: send Authorization: Bearer <key>")
)

// KindOf returns the kind of err, 0 when it is internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}
