package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/steward-dev/steward/gossip"
)

// The gossip keyring through the API (GET and POST /v1/keyring, which
// `agent keyring` calls): every change is saved to the keyring file in the
// data dir, so it survives restarts. Keys never leave the agent through the
// API: listing shows fingerprints.

// clusterSecrets are what the raft port's cluster key derives from
// (raftctl.Config.ClusterSecrets): the gossip keyring as it is now, primary
// first, so that a rotation carries the raft port along; without gossip
// encryption, the API token; with neither, nothing (no authentication).
func (a *Agent) clusterSecrets() [][]byte {
	if g := a.liveKeys.Load(); g != nil {
		if keys, err := g.ListKeys(); err == nil {
			return keys
		}
	}
	if len(a.startKeys) > 0 {
		return a.startKeys
	}
	if a.apiToken != "" {
		return [][]byte{[]byte(a.apiToken)}
	}
	return nil
}

// keyFingerprint names a key without revealing it: the first 8 bytes of
// its SHA-256, in hex.
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// KeyringView is GET /v1/keyring.
type KeyringView struct {
	// Keys are fingerprints, primary first.
	Keys []string `json:"keys"`
}

func (a *Agent) handleKeyringList(w http.ResponseWriter, r *http.Request) {
	keys, err := a.gossip.ListKeys()
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	out := KeyringView{Keys: []string{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyFingerprint(k))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleKeyringChange is POST /v1/keyring with {"op": "install"|"use"|
// "remove", "key": "<base64>"}.
func (a *Agent) handleKeyringChange(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Op  string `json:"op"`
		Key string `json:"key"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, `body must be {"op": "install"|"use"|"remove", "key": "<base64 key>"}`)
		return
	}
	key, err := gossip.ParseKey(body.Key)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch body.Op {
	case "install":
		err = a.gossip.InstallKey(key)
	case "use":
		err = a.gossip.UseKey(key)
	case "remove":
		err = a.gossip.RemoveKey(key)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("op %q is not install, use or remove", body.Op))
		return
	}
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	a.log.Warn("gossip keyring changed", "op", body.Op, "key", keyFingerprint(key))
	a.handleKeyringList(w, r)
}
