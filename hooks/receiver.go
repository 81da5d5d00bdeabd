package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// MaxEventBytes bounds the body ParseEvent reads. The largest event, a
// node.rejoin listing every partition of the largest table, fits well
// within it.
const MaxEventBytes = 1 << 20

// ErrBodyTooLarge is returned by ParseEvent for a body over MaxEventBytes.
var ErrBodyTooLarge = errors.New("hooks: event body too large")

// ParseEvent reads, verifies and decodes one webhook delivery. Errors wrap
// one of the Verify sentinels (ErrMissingHeaders, ErrBadTimestamp,
// ErrStaleTimestamp, ErrBadSignature: the request is not trusted),
// ErrBodyTooLarge, ErrInvalidEvent (a signed but malformed body), or
// ErrUnknownType (a valid delivery of a type this version does not know;
// the returned Event is filled in then, so that a caller may log it).
//
// Decoding refuses trailing data, wrong field types and an id different
// from the webhook-id header; it tolerates unknown fields, so that an agent
// can add fields to events without breaking apps built against an older
// version of this package (the body is signed, so an unknown field is never
// an attacker's).
func ParseEvent(r *http.Request, secret []byte, tolerance time.Duration) (Event, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxEventBytes+1))
	if err != nil {
		return Event{}, fmt.Errorf("hooks: read body: %w", err)
	}
	if len(body) > MaxEventBytes {
		return Event{}, ErrBodyTooLarge
	}
	if err := Verify(secret, r.Header, body, time.Now(), tolerance); err != nil {
		return Event{}, err
	}
	ev, err := decodeEvent(body)
	if err != nil {
		return Event{}, err
	}
	if ev.ID != r.Header.Get(HeaderID) {
		return Event{}, invalid("id %q differs from the webhook-id header %q", ev.ID, r.Header.Get(HeaderID))
	}
	if err := ev.Validate(); err != nil {
		return ev, err
	}
	return ev, nil
}

func decodeEvent(body []byte) (Event, error) {
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil {
		return Event{}, invalid("decode: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Event{}, invalid("trailing data after the event")
	}
	return ev, nil
}

// Response is a callback's answer to the agent.
type Response struct {
	// Status is the HTTP status to answer; 0 means 204 No Content (or 500
	// when Err is set). Any 2xx acknowledges the event; 202 on an assign
	// with a MigrationID means "copying, I will call AckMigration"; anything
	// else makes the agent retry the same event later.
	Status int
	// Err, if set, is written as the response body (for the agent's log).
	Err error
}

// Ack acknowledges the event: it has been applied (204).
func Ack() Response { return Response{Status: http.StatusNoContent} }

// Copying answers an assign with a Source: the copy has started and the
// app will call AckMigration (or FailMigration) when it ends (202).
func Copying() Response { return Response{Status: http.StatusAccepted} }

// Retry refuses the event for now; the agent delivers it again after a
// backoff (503).
func Retry(err error) Response { return Response{Status: http.StatusServiceUnavailable, Err: err} }

// Callback handles one event. It runs on the HTTP server's goroutine for
// the request, so it may block (the agent waits up to its delivery timeout)
// and callbacks for different partitions may run concurrently; the agent
// sends at most one event per partition at a time.
type Callback func(ctx context.Context, ev Event) Response

// Handler is the app's webhook endpoint: it verifies each delivery, decodes
// it and calls the callback for its type.
//
// It answers 405 to anything but POST, 401 when the signature, headers or
// timestamp do not verify, 413 for an oversized body and 400 for a signed
// but malformed event. An event whose type has no callback here (nil, or a
// type newer than this package) is acknowledged with 204: an app only
// implements what it cares about, and a newer agent never blocks an older
// app on an event it cannot understand.
type Handler struct {
	// Secret is the shared webhook secret (see ParseSecret).
	Secret []byte
	// Tolerance is how far a delivery's timestamp may be from this host's
	// clock; 0 means DefaultTolerance.
	Tolerance time.Duration
	// OnAssign handles partition.assign.
	OnAssign Callback
	// OnPromote handles partition.promote.
	OnPromote Callback
	// OnDemote handles partition.demote.
	OnDemote Callback
	// OnRelease handles partition.release.
	OnRelease Callback
	// OnSplit handles partition.split: it returns success only once every
	// child's keys are written durably (see TypeSplit). Without it a split
	// is answered 501 and delivered again, never acknowledged.
	OnSplit Callback
	// OnRejoin handles node.rejoin.
	OnRejoin Callback
	// OnQuorum handles cluster.quorum.
	OnQuorum Callback
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ev, err := ParseEvent(r, h.Secret, h.Tolerance)
	switch {
	case err == nil:
	case errors.Is(err, ErrUnknownType):
		w.WriteHeader(http.StatusNoContent)
		return
	case errors.Is(err, ErrMissingHeaders), errors.Is(err, ErrBadTimestamp),
		errors.Is(err, ErrStaleTimestamp), errors.Is(err, ErrBadSignature):
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	case errors.Is(err, ErrBodyTooLarge):
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	default:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cb := h.callback(ev.Type)
	if cb == nil {
		if ev.Type == TypeSplit {
			http.Error(w, "this app does not split partitions (no OnSplit)", http.StatusNotImplemented)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	resp := cb(r.Context(), ev)
	if ev.Type == TypeSplit && (resp.Status == 0 && resp.Err == nil || resp.Status >= 200 && resp.Status <= 299) {
		w.Header().Set(SplitDoneHeader, "done")
	}
	writeResponse(w, resp)
}

func (h *Handler) callback(t string) Callback {
	switch t {
	case TypeAssign:
		return h.OnAssign
	case TypePromote:
		return h.OnPromote
	case TypeDemote:
		return h.OnDemote
	case TypeRelease:
		return h.OnRelease
	case TypeSplit:
		return h.OnSplit
	case TypeRejoin:
		return h.OnRejoin
	case TypeQuorum:
		return h.OnQuorum
	}
	return nil
}

func writeResponse(w http.ResponseWriter, resp Response) {
	status := resp.Status
	if status == 0 {
		status = http.StatusNoContent
		if resp.Err != nil {
			status = http.StatusInternalServerError
		}
	}
	if resp.Err == nil || status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, resp.Err.Error()+"\n")
}
