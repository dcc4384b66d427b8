package cell

import (
	"errors"
	"fmt"
)

// Error codes: the stable `code` of every error body (API.md "Errors").
const (
	EInvalid      = "invalid"
	EUnauthorized = "unauthorized"
	EForbidden    = "forbidden"
	ENotFound     = "not_found"
	EConflict     = "conflict"
	ERateLimited  = "rate_limited"
	EMisdirected  = "misdirected"
	ETooLarge     = "too_large"
	// EUnavailable: the tenant takes no new chats now (no agent online, or outside business
	// hours); the widget shows the offline form.
	EUnavailable = "unavailable"
	EInternal    = "internal"
)

// Error is the one error type of the cell domain. Code is one of the E* constants; Message is
// safe to show to the caller. Adapters translate driver errors into it at the boundary; anything
// else reaching an HTTP surface is reported as internal.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, EInternal otherwise and ""
// for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EInternal
	}
}

// ErrorMessage returns the human message of err if it is an *Error, "internal error" otherwise.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
