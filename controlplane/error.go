package controlplane

import (
	"errors"
	"fmt"
)

// Error codes: the stable `code` of every control-plane error body (API.md "Errors").
const (
	EInvalid      = "invalid"
	EUnauthorized = "unauthorized"
	EForbidden    = "forbidden"
	ENotFound     = "not_found"
	EConflict     = "conflict"
	ETooLarge     = "too_large"
	EInternal     = "internal"
)

// Error is the one error type of the control-plane domain. Code is one of the E* constants and
// Message is safe to show to a super-admin. Adapters (store, drivers, HTTP client) translate the
// errors of their technology into it at the boundary; anything else reaching the API is reported
// as internal and logged.
type Error struct {
	// Code is the stable machine-readable code, e.g. "conflict".
	Code string `json:"code"`
	// Message is the human-readable explanation.
	Message string `json:"message"`
	// RequestID is the id of the HTTP request that failed, when the error came back from the API.
	RequestID string `json:"requestId,omitempty"`
}

// Error implements the error interface as "<code>: <message>".
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, EInternal for any other error
// and "" for nil.
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

// ErrorMessage returns the message of err if it is (or wraps) an *Error and "internal error"
// otherwise, so internal details never reach a caller.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
