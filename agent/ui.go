package agent

import "net/http"

// handleUI serves GET /ui: one self-contained page that polls the API every
// second and shows the members and the partition map. No external assets,
// so it works on an air-gapped machine.
func (a *Agent) handleUI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	_, _ = w.Write([]byte(uiPage))
}

const uiPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Steward</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
 h1 { font-size: 1.4em; margin: 0 0 .2em; }
 .sub { color: #666; margin-bottom: 1em; }
 table { border-collapse: collapse; margin-bottom: 1.5em; }
 th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: left; }
 th { background: #f4f4f4; }
 .alive { color: #17702d; } .suspect { color: #b36b00; } .failed { color: #b00020; font-weight: bold; }
 .leaving, .left { color: #666; }
 #map { display: grid; grid-template-columns: repeat(auto-fill, minmax(7.5em, 1fr)); gap: 4px; }
 .p { border: 1px solid #ccc; border-radius: 3px; padding: 2px 4px; font-size: 12px; }
 .p b { display: block; } .p.mig { border-color: #b36b00; } .p.nop { border-color: #b00020; }
 #err { color: #b00020; }
</style>
</head>
<body>
<h1>Steward</h1>
<div class="sub" id="status">loading…</div>
<div id="err"></div>
<h2>Members</h2>
<table id="members"><thead><tr><th>ID</th><th>status</th><th>voter</th><th>zone</th><th>primaries</th><th>copies</th><th>health</th><th>API</th></tr></thead><tbody></tbody></table>
<h2>Partitions</h2>
<div id="map"></div>
<script>
function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c])); }
async function get(path) { const r = await fetch(path); if (!r.ok) throw new Error(path + ": " + r.status); return r.json(); }
async function refresh() {
  try {
    const st = await get("/v1/status");
    document.getElementById("status").textContent =
      "node " + st.node_id + " · " + st.raft_state + " · leader " + (st.leader_id || "none") +
      " · term " + st.term + " · quorum " + st.quorum + (st.removals_frozen ? " · removals frozen: " + st.removals_frozen : "");
    const ms = (await get("/v1/members")).members || [];
    document.querySelector("#members tbody").innerHTML = ms.map(m =>
      "<tr><td>" + esc(m.id) + "</td><td class='" + esc(m.status) + "'>" + esc(m.status) + "</td><td>" + (m.voter ? "yes" : "") +
      "</td><td>" + esc(m.zone) + "</td><td>" + m.primaries + "</td><td>" + m.copies + "</td><td>" + esc(m.health || "") +
      "</td><td>" + esc(m.api_addr) + "</td></tr>").join("");
    const pt = await get("/v1/partitions");
    document.getElementById("map").innerHTML = (pt.partitions || []).map(p =>
      "<div class='p" + ((p.migrations || []).length ? " mig" : "") + (p.primary ? "" : " nop") + "'><b>#" + p.id + " e" + p.epoch + "</b>" +
      esc(p.primary || "no primary") + "<br>" + esc((p.replicas || []).join(", ")) +
      ((p.migrations || []).length ? "<br>→ " + esc(p.migrations.map(m => m.target).join(", ")) : "") + "</div>").join("");
    document.getElementById("err").textContent = "";
  } catch (e) { document.getElementById("err").textContent = e.message; }
}
refresh(); setInterval(refresh, 1000);
</script>
</body>
</html>
`
