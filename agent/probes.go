package agent

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The -health-addr listener: what a kubelet's probes and a Prometheus
// scrape reach from off the host, while the API stays on loopback.

// Paths of the probe listener. configs/kubernetes-sidecar.yaml points its
// probes and scrape annotation at them (TestTheKubernetesProbesReachTheAgent
// checks that they match).
const (
	HealthPath  = "/v1/health"
	ReadyPath   = "/v1/ready"
	MetricsPath = "/metrics"
)

// probeRoutes serves the liveness and readiness probes and the metrics,
// and nothing else: no table, no mutation, no page.
func (a *Agent) probeRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HealthPath, a.handleHealth)
	mux.HandleFunc("GET "+ReadyPath, a.handleReady)
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "the health listener serves only GET "+HealthPath+", "+ReadyPath+" and "+MetricsPath+"; the API is on -http-addr")
	})
	return mux
}

// handleReady is GET /v1/ready: 200 once this agent's partition table is
// current (caught up, in contact with the leader), 503 with the reason
// before, so that a readiness probe keeps a lagging agent out of service.
func (a *Agent) handleReady(w http.ResponseWriter, r *http.Request) {
	if ok, why := a.readiness(); !ok {
		writeError(w, http.StatusServiceUnavailable, "not ready: "+why)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "node_id": a.cfg.NodeID})
}

// startProbeServer serves probeRoutes on the -health-addr listener bound
// in Start, if any, in a loop that Shutdown stops.
func (a *Agent) startProbeServer() {
	if a.probeLn == nil {
		return
	}
	a.probeSrv = &http.Server{
		Handler:           a.probeRoutes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          a.log.Named("health-http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	a.goLoop("health-http", func() {
		if err := a.probeSrv.Serve(a.probeLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("health listener stopped", "error", err)
		}
	})
}

// stopProbeServer closes the -health-addr listener.
func (a *Agent) stopProbeServer() error {
	if a.probeSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return a.probeSrv.Shutdown(ctx)
	}
	if a.probeLn != nil {
		return a.probeLn.Close()
	}
	return nil
}

// HealthAddr is the address of the -health-addr listener ("" without
// one; useful when its port was 0).
func (a *Agent) HealthAddr() string {
	if a.probeLn == nil {
		return ""
	}
	return a.probeLn.Addr().String()
}
