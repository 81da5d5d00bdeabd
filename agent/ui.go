package agent

import (
	_ "embed"
	"net/http"
)

// uiPage is GET /ui: one self-contained page (no external assets, so it
// works on an air-gapped machine) that polls this agent's API every second
// and puts trouble first: a quorum-lost banner, under-replicated
// partitions, copies in flight, the leader's recent decisions with their
// reasons, then the members and the partition map with a legend. A holder
// that is not in service is always shown struck out with its status, never
// as serving.
//
//go:embed ui.html
var uiPage []byte

func (a *Agent) handleUI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	_, _ = w.Write(uiPage)
}
