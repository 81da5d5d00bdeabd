package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Topics of the watch stream.
const (
	TopicPartitions = "partitions"
	TopicMembers    = "members"
	TopicResources  = "resources"
	// TopicHeartbeat names the events a stream sends while nothing
	// changes.
	TopicHeartbeat = "heartbeat"
)

// ErrStreamEnded: the agent closed the stream without an error event (it
// shut down, or a proxy cut the connection).
var ErrStreamEnded = errors.New("client: the agent ended the watch stream")

// Event is one event of a watch stream.
type Event struct {
	// Topic is TopicPartitions, TopicMembers, TopicResources or
	// TopicHeartbeat.
	Topic string
	// Index is the state index the view was rendered at (for a heartbeat,
	// the agent's current one).
	Index uint64
	// Table is set for TopicPartitions: the full table.
	Table *Table
	// Members is set for TopicMembers: the full member list.
	Members []Member
	// Resources is set for TopicResources: every resource.
	Resources []ResourceInfo
	// Data is the event's JSON as sent.
	Data json.RawMessage
}

// WatchOptions choose what a stream carries.
type WatchOptions struct {
	// Topics to watch; empty means all.
	Topics []string
	// Stale keeps the stream open while the agent is out of contact with
	// the leader (its tables then say Stale); without it the agent ends
	// the stream with an error event (Watch returns a 503 *Error).
	Stale bool
	// IdleTimeout ends a stream on which nothing (not even a heartbeat,
	// every 5 s) arrived for this long: the connection is dead. Default
	// 15 s.
	IdleTimeout time.Duration
}

func (o WatchOptions) path() string {
	v := url.Values{}
	if len(o.Topics) > 0 {
		v.Set("topics", strings.Join(o.Topics, ","))
	}
	if o.Stale {
		v.Set("stale", "true")
	}
	if len(v) == 0 {
		return "/v1/watch"
	}
	return "/v1/watch?" + v.Encode()
}

// Watch follows the agent's watch stream (GET /v1/watch): each topic's
// full view first, then again on every change, and heartbeats. It calls
// handle for every event, in the caller's goroutine, until the stream
// ends, and returns why: ctx's error, handle's error, the agent's refusal
// or error event as an *Error (503 when it is out of contact with the
// leader: try another agent), ErrStreamEnded, or a connection error. It
// tries the agents in turn while they cannot be reached; Router follows
// the stream across agents and reconnects for you.
func (c *Client) Watch(ctx context.Context, opts WatchOptions, handle func(Event) error) error {
	var errs []error
	first := c.agentIndex()
	for i := range c.bases {
		at := (first + i) % len(c.bases)
		connected, err := c.watchAt(ctx, c.bases[at], opts, handle)
		if connected || ctx.Err() != nil {
			c.setAgentIndex(at)
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("client: no agent could be reached: %w", errors.Join(errs...))
}

// watchAt follows the stream of the agent at base; connected reports
// whether the agent answered (so that a caller tries another one only
// when it did not).
func (c *Client) watchAt(ctx context.Context, base string, opts WatchOptions, handle func(Event) error) (connected bool, err error) {
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = 15 * time.Second
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errIdle := fmt.Errorf("client: nothing from %s for %s", base, idle)
	watchdog := time.AfterFunc(idle, func() { cancel(errIdle) })
	defer watchdog.Stop()

	req, err := c.newRequest(ctx, base, http.MethodGet, opts.path(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("client: %s: %w", base, streamErr(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw := make([]byte, 4096)
		n, _ := resp.Body.Read(raw)
		return true, refusal(base, resp.StatusCode, raw[:n])
	}

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxAnswerBytes)
	var name, id string
	var data []string
	for sc.Scan() {
		watchdog.Reset(idle)
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				name = value
			case "id":
				id = value
			case "data":
				data = append(data, value)
			}
			continue
		}
		if len(data) == 0 {
			name, id = "", ""
			continue
		}
		ev, err := decodeEvent(name, id, strings.Join(data, "\n"))
		name, id, data = "", "", nil
		if err != nil {
			return true, fmt.Errorf("client: %s: %w", base, err)
		}
		if ev.Topic == "error" {
			return true, refusal(base, http.StatusServiceUnavailable, ev.Data)
		}
		if err := handle(ev); err != nil {
			return true, err
		}
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("client: %s: %w", base, streamErr(ctx, err))
	}
	if ctx.Err() != nil {
		return true, streamErr(ctx, ctx.Err())
	}
	return true, ErrStreamEnded
}

// streamErr prefers the cause of ctx's end (the idle watchdog) to the
// error it caused.
func streamErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func decodeEvent(name, id, data string) (Event, error) {
	ev := Event{Topic: name, Data: json.RawMessage(data)}
	if id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return ev, fmt.Errorf("event %q: id %q is not an index", name, id)
		}
		ev.Index = n
	}
	switch name {
	case TopicPartitions:
		ev.Table = &Table{}
		if err := json.Unmarshal(ev.Data, ev.Table); err != nil {
			return ev, fmt.Errorf("event %q: %w", name, err)
		}
	case TopicMembers:
		var body struct {
			Members []Member `json:"members"`
		}
		if err := json.Unmarshal(ev.Data, &body); err != nil {
			return ev, fmt.Errorf("event %q: %w", name, err)
		}
		ev.Members = body.Members
	case TopicResources:
		var body struct {
			Resources []ResourceInfo `json:"resources"`
		}
		if err := json.Unmarshal(ev.Data, &body); err != nil {
			return ev, fmt.Errorf("event %q: %w", name, err)
		}
		ev.Resources = body.Resources
	case TopicHeartbeat:
		var body struct {
			Index uint64 `json:"index"`
		}
		if err := json.Unmarshal(ev.Data, &body); err != nil {
			return ev, fmt.Errorf("event %q: %w", name, err)
		}
		ev.Index = body.Index
	}
	return ev, nil
}
