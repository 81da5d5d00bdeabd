package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LeaseKeeper is the app side of primary leases. An app must not serve a
// read or accept a write as a partition's primary once another node may
// have been promoted for it; the agent renews a lease with the raft leader
// only while it is in contact with a quorum, and the leader promotes a
// successor only after the old lease has certainly run out. The keeper
// polls the agent's GET /v1/lease and keeps the deadline on the app's own
// monotonic clock, counted from the moment each poll was sent: if the agent
// is paused, killed or cut off, the polls stop succeeding and the lease
// simply runs out, with no message needed.
//
// Use Serving (or Check) right before answering a read from a partition as
// primary, and again before acknowledging a write.
type LeaseKeeper struct {
	cfg    LeaseKeeperConfig
	client *http.Client

	mu        sync.Mutex
	deadline  time.Time
	primaries map[int]uint64
	lastErr   error

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// LeaseKeeperConfig configures a LeaseKeeper.
type LeaseKeeperConfig struct {
	// AgentURL is the base URL of the co-located agent's API, e.g.
	// http://127.0.0.1:7948.
	AgentURL string
	// Interval is how often the agent is asked. It should be a small
	// fraction of the lease (local profile: 450 ms), so that a slow or lost
	// poll does not end the lease; the agent answers from memory.
	Interval time.Duration
	// Client makes the requests; nil means a client with a timeout of
	// Interval×4.
	Client *http.Client
}

// DefaultLeaseInterval is LeaseKeeperConfig.Interval's default.
const DefaultLeaseInterval = 50 * time.Millisecond

// ErrNoLease is returned by Check when the app must not serve a partition
// as primary now.
var ErrNoLease = errors.New("hooks: no primary lease")

// NewLeaseKeeper checks cfg; Start begins polling.
func NewLeaseKeeper(cfg LeaseKeeperConfig) (*LeaseKeeper, error) {
	if cfg.AgentURL == "" {
		return nil, errors.New("hooks: LeaseKeeperConfig.AgentURL is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultLeaseInterval
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 4 * cfg.Interval}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &LeaseKeeper{
		cfg: cfg, client: client, primaries: map[int]uint64{},
		lastErr: errors.New("no answer from the agent yet"),
		ctx:     ctx, cancel: cancel,
	}, nil
}

// Start polls the agent every Interval until Close.
func (k *LeaseKeeper) Start() {
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		t := time.NewTicker(k.cfg.Interval)
		defer t.Stop()
		for {
			_ = k.Refresh(k.ctx)
			select {
			case <-k.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops polling and waits for it; safe to call twice. The lease then
// runs out on its own.
func (k *LeaseKeeper) Close() {
	k.once.Do(func() {
		k.cancel()
		k.wg.Wait()
	})
}

// leaseAnswer is the agent's GET /v1/lease.
type leaseAnswer struct {
	Valid       bool              `json:"valid"`
	RemainingMS int64             `json:"remaining_ms"`
	Primaries   map[string]uint64 `json:"primaries"`
}

// Refresh asks the agent once and updates the lease. The deadline counts
// from before the request was sent, so it can only end early.
func (k *LeaseKeeper) Refresh(ctx context.Context) error {
	sent := time.Now()
	err := k.refresh(ctx, sent)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastErr = err
	return err
}

func (k *LeaseKeeper) refresh(ctx context.Context, sent time.Time) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(k.cfg.AgentURL, "/")+"/v1/lease", nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("hooks: lease: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("hooks: lease: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("hooks: lease: agent answered %s", resp.Status)
	}
	var a leaseAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("hooks: lease: bad answer: %w", err)
	}
	primaries := make(map[int]uint64, len(a.Primaries))
	for p, e := range a.Primaries {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return fmt.Errorf("hooks: lease: bad partition %q", p)
		}
		primaries[n] = e
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !a.Valid || a.RemainingMS <= 0 {
		k.deadline, k.primaries = time.Time{}, map[int]uint64{}
		return fmt.Errorf("%w: the agent holds none (out of contact with the cluster's leader)", ErrNoLease)
	}
	deadline := sent.Add(time.Duration(a.RemainingMS) * time.Millisecond)
	if deadline.Before(k.deadline) {
		return nil // an answer overtaken by a later one
	}
	k.deadline, k.primaries = deadline, primaries
	return nil
}

// Check returns nil if the app may serve partition as primary now, holding
// it at epoch: the lease has not run out, and it grants the partition at
// an epoch no newer than the app's (an app still at an older epoch has not
// yet taken in the change that made it primary). Otherwise ErrNoLease,
// wrapped with the reason.
func (k *LeaseKeeper) Check(partition int, epoch uint64) error {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	switch granted, ok := k.primaries[partition]; {
	case !now.Before(k.deadline):
		return fmt.Errorf("%w: expired (%v)", ErrNoLease, k.lastErr)
	case !ok:
		return fmt.Errorf("%w for partition %d", ErrNoLease, partition)
	case granted > epoch:
		return fmt.Errorf("%w for partition %d at epoch %d (granted at epoch %d)", ErrNoLease, partition, epoch, granted)
	}
	return nil
}

// Serving is Check as a boolean.
func (k *LeaseKeeper) Serving(partition int, epoch uint64) bool {
	return k.Check(partition, epoch) == nil
}

// Remaining is how long the lease still runs (0 if it has run out).
func (k *LeaseKeeper) Remaining() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if d := time.Until(k.deadline); d > 0 {
		return d
	}
	return 0
}
