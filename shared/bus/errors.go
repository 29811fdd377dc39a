package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pleiades-db/pleiades/shared/proto/buspb"
)

// Code classifies a failed call; it travels on the wire.
type Code = buspb.Code

// The codes a handler's error maps to. See buspb.Code for their meaning.
const (
	CodeOK                 = buspb.Code_OK
	CodeInvalidArgument    = buspb.Code_INVALID_ARGUMENT
	CodeNotFound           = buspb.Code_NOT_FOUND
	CodeAlreadyExists      = buspb.Code_ALREADY_EXISTS
	CodeFailedPrecondition = buspb.Code_FAILED_PRECONDITION
	CodeUnavailable        = buspb.Code_UNAVAILABLE
	CodeDeadlineExceeded   = buspb.Code_DEADLINE_EXCEEDED
	CodeNotLeader          = buspb.Code_NOT_LEADER
	CodeInternal           = buspb.Code_INTERNAL
	CodeCanceled           = buspb.Code_CANCELED
	CodeUnimplemented      = buspb.Code_UNIMPLEMENTED
	CodeResourceExhausted  = buspb.Code_RESOURCE_EXHAUSTED
	CodeUnauthenticated    = buspb.Code_UNAUTHENTICATED
	CodePermissionDenied   = buspb.Code_PERMISSION_DENIED
)

// ReasonNoListener comes with CodeUnavailable when nothing listens at the
// peer's address: the dial was answered by an ICMP port unreachable (the
// UDP form of "connection refused"; see the package doc). The call was
// never delivered, so it is safe to retry anywhere; a caller with other
// addresses should try them rather than wait for this one.
const ReasonNoListener = "no_listener"

// Error is a failure with a wire code. Handlers return one (directly or
// wrapped) to choose the code the caller sees; callers get one back from
// every failed call and can test it with errors.Is against the sentinels
// below, which match on code alone.
type Error struct {
	// Code is the failure class.
	Code Code
	// Message explains the failure for humans.
	Message string
	// LeaderHint is the leader's address when Code is CodeNotLeader, if known.
	LeaderHint string
	// Reason names the cause within the code for programs to act on (for
	// example kvpb.ReasonNotInitialized), where the message is for humans;
	// empty when the code says it all.
	Reason string
	// Detail is the failure's machine-readable detail, defined by the
	// protocol with its Reason (kv: range_key_mismatch carries a
	// kvpb.DescriptorsResponse); nil when there is none.
	Detail []byte
}

// Error implements error.
func (e *Error) Error() string {
	name := codeName(e.Code)
	switch {
	case e.Message == "" && e.LeaderHint == "":
		return "bus: " + name
	case e.Code == CodeNotLeader && e.LeaderHint != "":
		if e.Message == "" {
			return fmt.Sprintf("bus: %s (leader %s)", name, e.LeaderHint)
		}
		return fmt.Sprintf("bus: %s: %s (leader %s)", name, e.Message, e.LeaderHint)
	default:
		return fmt.Sprintf("bus: %s: %s", name, e.Message)
	}
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, bus.ErrNotFound) holds for every not-found failure.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func codeName(c Code) string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeInvalidArgument:
		return "invalid argument"
	case CodeNotFound:
		return "not found"
	case CodeAlreadyExists:
		return "already exists"
	case CodeFailedPrecondition:
		return "failed precondition"
	case CodeUnavailable:
		return "unavailable"
	case CodeDeadlineExceeded:
		return "deadline exceeded"
	case CodeNotLeader:
		return "not leader"
	case CodeInternal:
		return "internal"
	case CodeCanceled:
		return "canceled"
	case CodeUnimplemented:
		return "unimplemented"
	case CodeResourceExhausted:
		return "resource exhausted"
	case CodeUnauthenticated:
		return "unauthenticated"
	case CodePermissionDenied:
		return "permission denied"
	}
	return fmt.Sprintf("code(%d)", int32(c))
}

// Sentinels for errors.Is; they match any *Error of their code.
var (
	ErrInvalidArgument    = &Error{Code: CodeInvalidArgument}
	ErrNotFound           = &Error{Code: CodeNotFound}
	ErrAlreadyExists      = &Error{Code: CodeAlreadyExists}
	ErrFailedPrecondition = &Error{Code: CodeFailedPrecondition}
	ErrUnavailable        = &Error{Code: CodeUnavailable}
	ErrDeadlineExceeded   = &Error{Code: CodeDeadlineExceeded}
	ErrNotLeader          = &Error{Code: CodeNotLeader}
	ErrInternal           = &Error{Code: CodeInternal}
	ErrCanceled           = &Error{Code: CodeCanceled}
	ErrUnimplemented      = &Error{Code: CodeUnimplemented}
	ErrResourceExhausted  = &Error{Code: CodeResourceExhausted}
	ErrUnauthenticated    = &Error{Code: CodeUnauthenticated}
	ErrPermissionDenied   = &Error{Code: CodePermissionDenied}
)

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithReason returns an *Error with the given code and reason and a
// formatted message.
func WithReason(code Code, reason, format string, args ...any) error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason carried by err (see Error.Reason), if any.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// WithDetail returns an *Error with the given code, reason and detail and
// a formatted message.
func WithDetail(code Code, reason string, detail []byte, format string, args ...any) error {
	return &Error{Code: code, Reason: reason, Detail: detail, Message: fmt.Sprintf(format, args...)}
}

// DetailOf returns the detail carried by err (see Error.Detail), if any.
func DetailOf(err error) []byte {
	var e *Error
	if errors.As(err, &e) {
		return e.Detail
	}
	return nil
}

// NotLeader returns a CodeNotLeader error naming the leader's address (empty if unknown).
func NotLeader(hint string) error {
	return &Error{Code: CodeNotLeader, LeaderHint: hint}
}

// CodeOf returns the wire code for err: the code of the outermost *Error in
// its chain, CodeDeadlineExceeded or CodeCanceled for context errors,
// CodeOK for nil and CodeInternal for anything else. This is the one table
// that maps internal errors to wire codes.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	}
	return CodeInternal
}

// LeaderHint returns the leader hint carried by err, if any.
func LeaderHint(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.LeaderHint
	}
	return ""
}

// toWire converts a handler's error to the fields of a Response (the zero
// Error, code OK, for nil). The message is the error text without the
// "bus: <code>" part of the *Error in it, because the caller's *Error adds
// that back. ReasonNoListener does not travel: it describes a dial the
// handler made (to forward, say), and its caller would take it for its own
// dial to the handler, which answered.
func toWire(err error) Error {
	w := toWireKeepReason(err)
	if w.Reason == ReasonNoListener {
		w.Reason = ""
	}
	return w
}

func toWireKeepReason(err error) Error {
	if err == nil {
		return Error{}
	}
	var e *Error
	if !errors.As(err, &e) {
		return Error{Code: CodeOf(err), Message: err.Error()}
	}
	if e == err {
		return *e
	}
	// Wrapped: keep the wrapping context, drop the inner prefix.
	msg := err.Error()
	if inner := e.Error(); inner != "" {
		if e.Message != "" {
			msg = strings.Replace(msg, inner, e.Message, 1)
		} else {
			msg = strings.TrimSuffix(strings.Replace(msg, inner, "", 1), ": ")
		}
	}
	return Error{Code: e.Code, Message: msg, LeaderHint: e.LeaderHint, Reason: e.Reason, Detail: e.Detail}
}

// fromWire rebuilds a caller-side error from a Response's fields.
func fromWire(r response) error {
	if r.code == CodeOK {
		return nil
	}
	return &Error{Code: r.code, Message: r.message, LeaderHint: r.hint, Reason: r.reason, Detail: r.detail}
}
