package main

import (
	"context"
	"errors"

	"github.com/steward-dev/steward/hooks"
)

// reportHoldings tells the agent, once at start-up, which partitions the
// data dir holds in full (none when it was wiped), retrying until the agent
// takes the report. Until then the app refuses webhooks and is not
// healthy, so that the agent never acts on what a previous life of the app
// acknowledged and this one no longer has: the agent drops those copies,
// has them made again from live holders, and delivers what the cluster now
// gives this app.
func (s *server) reportHoldings() {
	held := s.store.holdings()
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, 2*s.cfg.PeerTimeout)
		res, err := hooks.ReportHoldings(ctx, s.client, s.cfg.AgentURL, s.cfg.APIToken, held)
		cancel()
		if err == nil {
			s.reported.Store(true)
			s.log.Info("reported the partitions this app holds to its agent", "held", len(held),
				"lost", res.Lost, "redelivered", res.Redelivered)
			if len(res.DataLost) > 0 {
				s.log.Error("the agent says the last copy of these partitions is lost", "partitions", res.DataLost)
			}
			return
		}
		switch {
		case errors.Is(err, hooks.ErrHoldingsRefused):
			s.log.Error("the agent refuses the holdings report; retrying", "err", err)
		case attempt%20 == 19:
			s.log.Warn("cannot report holdings to the agent yet; retrying", "attempt", attempt+1, "err", err)
		default:
			s.log.Debug("cannot report holdings to the agent yet", "err", err)
		}
		if !sleepCtx(s.ctx, backoff(attempt)) {
			return
		}
	}
}
