package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/steward-dev/steward/gossip"
)

// Gossip key rotation without downtime, one agent at a time (the operator
// runs each step against every agent before the next step):
//
//	agent keyring -install NEWKEY   on every agent
//	agent keyring -use NEWKEY       on every agent
//	agent keyring -remove OLDKEY    on every agent
//
// Every change is saved to the keyring file in the data dir, so it
// survives restarts. Keys never leave the agent through the API: listing
// shows fingerprints.

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
	if a.cfg.APIToken != "" {
		return [][]byte{[]byte(a.cfg.APIToken)}
	}
	return nil
}

// keyFingerprint names a key without revealing it: the first 8 bytes of
// its SHA-256, in hex.
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// keyringView is GET /v1/keyring.
type keyringView struct {
	// Keys are fingerprints, primary first.
	Keys []string `json:"keys"`
}

func (a *Agent) handleKeyringList(w http.ResponseWriter, r *http.Request) {
	keys, err := a.gossip.ListKeys()
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	out := keyringView{Keys: []string{}}
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

// cmdKeyring is `agent keyring -list | -install KEY | -use KEY | -remove KEY`.
func cmdKeyring(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keyring", stderr)
	cf := clientFlags{}
	cf.register(fs)
	list := fs.Bool("list", false, "list the key fingerprints, primary first")
	install := fs.String("install", "", "install this base64 key (not yet used for sending)")
	use := fs.String("use", "", "make this installed key the primary")
	remove := fs.String("remove", "", "remove this key (not the primary)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return flagParseError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := cf.resolve(); err != nil {
		return err
	}
	ops := map[string]string{"install": *install, "use": *use, "remove": *remove}
	var op, key string
	for o, k := range ops {
		if k != "" {
			if op != "" {
				return usagef("keyring: give one of -list, -install, -use, -remove")
			}
			op, key = o, k
		}
	}
	var view keyringView
	switch {
	case op != "" && *list:
		return usagef("keyring: give one of -list, -install, -use, -remove")
	case op != "":
		if _, err := base64.StdEncoding.DecodeString(key); err != nil {
			return usagef("-%s: not base64: %v", op, err)
		}
		if err := cf.post("/v1/keyring", map[string]string{"op": op, "key": key}, &view); err != nil {
			return err
		}
	case *list:
		if _, err := cf.get("/v1/keyring", &view); err != nil {
			return err
		}
	default:
		return usagef("keyring: give one of -list, -install, -use, -remove")
	}
	for i, k := range view.Keys {
		role := ""
		if i == 0 {
			role = " (primary)"
		}
		fmt.Fprintf(stdout, "%s%s\n", k, role)
	}
	return nil
}
