package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"

	"github.com/steward-dev/steward/agent"
)

// `agent tls`: the command over agent.GenerateTestCA and
// agent.GenerateNodeCert.

const tlsUsage = `Usage:
  agent tls ca   -dir D
      make a CA: D/ca.pem and D/ca-key.pem (keep the key offline)
  agent tls cert -dir D -ca-cert D/ca.pem -ca-key D/ca-key.pem -node-id N [-ip IP]... [-dns NAME]...
      issue node N's certificate: D/N.pem and D/N-key.pem, valid for
      127.0.0.1 and every -ip (give the node's -bind IP) and -dns name
      (the cluster-wide name of -tls-server-name, for changing IPs)

Then run each agent with -tls-cert D/N.pem -tls-key D/N-key.pem -tls-ca D/ca.pem.
`

// cmdTLS implements `agent tls ca` and `agent tls cert`.
func cmdTLS(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("tls: want a sub-command, ca or cert (agent tls -h for help)")
	}
	switch args[0] {
	case "ca":
		fs := newFlagSet("tls ca", stderr)
		dir := fs.String("dir", ".", "directory to write ca.pem and ca-key.pem to")
		if err := parseTLSFlags(fs, args[1:]); err != nil {
			return err
		}
		certPath, keyPath, err := agent.GenerateTestCA(*dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "CA certificate: %s\nCA key:         %s (keep it secret)\n", certPath, keyPath)
		return nil
	case "cert":
		fs := newFlagSet("tls cert", stderr)
		dir := fs.String("dir", ".", "directory to write <node-id>.pem and <node-id>-key.pem to")
		caCert := fs.String("ca-cert", "", "CA certificate (default <dir>/ca.pem)")
		caKey := fs.String("ca-key", "", "CA key (default <dir>/ca-key.pem)")
		nodeID := fs.String("node-id", "", "the node's -node-id (required)")
		var ips ipListFlag
		fs.Var(&ips, "ip", "an IP the node advertises, in addition to 127.0.0.1 (repeatable)")
		var dnsNames stringList
		fs.Var(&dnsNames, "dns", "a DNS name the certificate is valid for, such as the name all agents verify with -tls-server-name (repeatable)")
		if err := parseTLSFlags(fs, args[1:]); err != nil {
			return err
		}
		if *nodeID == "" {
			return usagef("tls cert: -node-id is required")
		}
		if *caCert == "" {
			*caCert = filepath.Join(*dir, agent.CACertFile)
		}
		if *caKey == "" {
			*caKey = filepath.Join(*dir, agent.CAKeyFile)
		}
		certPath, keyPath, err := agent.GenerateNodeCert(*caCert, *caKey, *dir, *nodeID, ips, dnsNames...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "certificate: %s\nkey:         %s\n", certPath, keyPath)
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, tlsUsage)
		return nil
	default:
		return usagef("tls: unknown sub-command %q, want ca or cert", args[0])
	}
}

func parseTLSFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", strings.TrimPrefix(fs.Name(), "agent "), fs.Arg(0))
	}
	return nil
}

// ipListFlag is a repeatable -ip flag.
type ipListFlag []net.IP

func (l *ipListFlag) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, ip := range *l {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

func (l *ipListFlag) Set(v string) error {
	ip := net.ParseIP(strings.TrimSpace(v))
	if ip == nil {
		return fmt.Errorf("%q is not an IP address", v)
	}
	*l = append(*l, ip)
	return nil
}
