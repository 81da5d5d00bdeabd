package main

import (
	"encoding/base64"
	"fmt"
	"io"

	"github.com/steward-dev/steward/agent"
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

// cmdKeyring is `agent keyring -list | -install KEY | -use KEY | -remove KEY`.
func cmdKeyring(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keyring", stderr)
	cf := clientFlags{}
	cf.register(fs)
	list := fs.Bool("list", false, "list the key fingerprints, primary first")
	install := fs.String("install", "", "install this base64 key (not yet used for sending)")
	use := fs.String("use", "", "make this installed key the primary")
	remove := fs.String("remove", "", "remove this key (not the primary)")
	if err := parseFlags(fs, args); err != nil {
		return err
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
	var view agent.KeyringView
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
