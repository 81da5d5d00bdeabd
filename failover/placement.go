package failover

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Per-resource placement: which nodes may hold a resource's copies (a node
// selector over the members' tags) and how its copies use the zones (a
// zones rule). Both are part of a resource's settings (Resource.Zones,
// Resource.Nodes; for the default resource Cluster.DefaultZones and
// DefaultNodes), set at creation (CmdCreateResource) or changed at run
// time (CmdSetPlacement). A member's tags come from its agent's -tags
// (CmdSetTags, proposed by the agent itself: tags may grow past what
// gossip metadata can carry).
//
// The planner never places a copy on a node the selector does not match:
// a resource whose selector matches fewer nodes than its replication
// factor keeps fewer copies (it is under-replicated, and reported so), and
// a copy already on a node that no longer matches is moved to one that
// does, add before remove, like a zone-spread move.

// ZonesRule says how a resource's copies use the members' zones (-zone).
type ZonesRule string

const (
	// ZonesSpread (the default; "" means it too): copies of a partition go
	// to distinct zones as far as there are zones, and share a zone only
	// when there are fewer zones than copies.
	ZonesSpread ZonesRule = "spread"
	// ZonesNone: the zones are ignored; copies go wherever the balance
	// wants them, several in one zone if need be.
	ZonesNone ZonesRule = "none"
	// ZonesStrict: never two copies of a partition in one zone. With fewer
	// zones (among the nodes the selector matches) than the replication
	// factor, a partition keeps one copy per zone and is under-replicated.
	ZonesStrict ZonesRule = "strict"
)

// ParseZonesRule checks a zones rule as given on the command line or the
// API; "" is ZonesSpread.
func ParseZonesRule(s string) (ZonesRule, error) {
	switch ZonesRule(s) {
	case "", ZonesSpread:
		return ZonesSpread, nil
	case ZonesNone, ZonesStrict:
		return ZonesRule(s), nil
	}
	return "", fmt.Errorf("failover: zones rule must be %q, %q or %q, got %q", ZonesSpread, ZonesNone, ZonesStrict, s)
}

// orSpread is the rule r means ("" is spread).
func (r ZonesRule) orSpread() ZonesRule {
	if r == "" {
		return ZonesSpread
	}
	return r
}

const (
	// MaxTags bounds a member's tags.
	MaxTags = 32
	// MaxTagLength bounds a tag's key and its value.
	MaxTagLength = 63
	// MaxSelectorTerms bounds the k=v terms of a node selector.
	MaxSelectorTerms = 16
)

// validTagText reports whether s uses only letters, digits, '-', '_', '.'
// and '/'.
func validTagText(s string) bool {
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '/'
		if !ok {
			return false
		}
	}
	return true
}

func checkTag(k, v string) error {
	if k == "" || len(k) > MaxTagLength || !validTagText(k) {
		return fmt.Errorf("failover: tag key %q must be 1 to %d letters, digits, '-', '_', '.' or '/'", k, MaxTagLength)
	}
	if len(v) > MaxTagLength || !validTagText(v) {
		return fmt.Errorf("failover: tag %q: value %q must be at most %d letters, digits, '-', '_', '.' or '/'", k, v, MaxTagLength)
	}
	return nil
}

// ValidateTags checks a member's tags.
func ValidateTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("failover: %d tags, at most %d", len(tags), MaxTags)
	}
	for k, v := range tags {
		if err := checkTag(k, v); err != nil {
			return err
		}
	}
	return nil
}

// ParseTags parses "k=v,k2=v2" (the -tags flag); "" is no tags. A key
// given twice is an error.
func ParseTags(s string) (map[string]string, error) {
	terms, err := parseTerms(s, MaxTags)
	if err != nil {
		return nil, err
	}
	if len(terms) == 0 {
		return nil, nil
	}
	return terms, nil
}

// parseTerms parses "k=v,k2=v2" with at most max terms.
func parseTerms(s string, max int) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, term := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(term), "=")
		if !ok {
			return nil, fmt.Errorf("failover: %q is not key=value", term)
		}
		if err := checkTag(k, v); err != nil {
			return nil, err
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("failover: key %q given twice", k)
		}
		out[k] = v
	}
	if len(out) > max {
		return nil, fmt.Errorf("failover: %d terms, at most %d", len(out), max)
	}
	return out, nil
}

// FormatTags writes tags as "k=v,k2=v2", keys sorted ("" for none).
func FormatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(tags[k])
	}
	return b.String()
}

// NodeSelector is a parsed node selector: a node matches when it has every
// key with the same value. The empty selector matches every node.
type NodeSelector map[string]string

// ParseNodeSelector parses a selector "k=v,k2=v2" ("" matches every node).
func ParseNodeSelector(s string) (NodeSelector, error) {
	terms, err := parseTerms(s, MaxSelectorTerms)
	if err != nil {
		return nil, fmt.Errorf("failover: node selector %q: %s", s, strings.TrimPrefix(err.Error(), "failover: "))
	}
	return NodeSelector(terms), nil
}

// CanonicalNodeSelector is s parsed and written back with its keys sorted,
// so that one selector has one spelling in the state.
func CanonicalNodeSelector(s string) (string, error) {
	sel, err := ParseNodeSelector(s)
	if err != nil {
		return "", err
	}
	return FormatTags(sel), nil
}

// Matches reports whether a member with tags matches the selector.
func (s NodeSelector) Matches(tags map[string]string) bool {
	for k, v := range s {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Placement is a resource's placement settings.
type Placement struct {
	Zones ZonesRule
	Nodes string
}

// PlacementOf returns the placement settings of the named resource.
func (c *Cluster) PlacementOf(name string) Placement {
	if name == "" || name == DefaultResource {
		return Placement{Zones: c.DefaultZones.orSpread(), Nodes: c.DefaultNodes}
	}
	for i := range c.Resources {
		if c.Resources[i].Name == name {
			return Placement{Zones: c.Resources[i].Zones.orSpread(), Nodes: c.Resources[i].Nodes}
		}
	}
	return Placement{Zones: ZonesSpread}
}

// validatePlacement checks a resource's zones rule and selector, the
// selector in its canonical spelling.
func validatePlacement(name string, zones ZonesRule, nodes string) error {
	if _, err := ParseZonesRule(string(zones)); err != nil {
		return fmt.Errorf("failover: resource %q: %s", name, strings.TrimPrefix(err.Error(), "failover: "))
	}
	canon, err := CanonicalNodeSelector(nodes)
	if err != nil {
		return fmt.Errorf("failover: resource %q: %s", name, strings.TrimPrefix(err.Error(), "failover: "))
	}
	if canon != nodes {
		return fmt.Errorf("failover: resource %q: node selector %q is not in its canonical form %q", name, nodes, canon)
	}
	return nil
}

// applySetPlacement sets the zones rule and node selector of the resource
// named by cmd.Resource to its Zones and Nodes (both; the proposer fills
// in the one it keeps). The planner then moves the copies that no longer
// fit, add before remove.
func (c *Cluster) applySetPlacement(cmd Command) error {
	if cmd.Resource == nil {
		return errors.New("failover: placement change without a resource")
	}
	r := *cmd.Resource
	if err := validatePlacement(r.Name, r.Zones, r.Nodes); err != nil {
		return err
	}
	zones := r.Zones
	if zones == ZonesSpread {
		zones = "" // one spelling in the state: "" is the default
	}
	if r.Name == DefaultResource {
		if !c.Bootstrapped {
			return errors.New("failover: placement changed before bootstrap")
		}
		c.DefaultZones, c.DefaultNodes = zones, r.Nodes
		return nil
	}
	for i := range c.Resources {
		if c.Resources[i].Name == r.Name {
			c.Resources[i].Zones, c.Resources[i].Nodes = zones, r.Nodes
			return nil
		}
	}
	return fmt.Errorf("%w %q", ErrUnknownResource, r.Name)
}

// applySetTags replaces the tags of member cmd.Node with cmd.Tags.
func (c *Cluster) applySetTags(cmd Command) error {
	m, ok := c.Members[cmd.Node]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
	}
	if err := ValidateTags(cmd.Tags); err != nil {
		return err
	}
	var tags map[string]string
	if len(cmd.Tags) > 0 {
		tags = make(map[string]string, len(cmd.Tags))
		for k, v := range cmd.Tags {
			tags[k] = v
		}
	}
	m.Tags = tags
	c.Members[cmd.Node] = m
	return nil
}

// SameTags reports whether a and b hold the same tags.
func SameTags(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// eligibleMembers is the members a resource with placement pl may be laid
// out on (LayoutResource): the ones its selector matches, with their zone
// cleared when the resource ignores zones.
func eligibleMembers(members map[string]Member, pl Placement) map[string]Member {
	sel, _ := ParseNodeSelector(pl.Nodes)
	out := make(map[string]Member, len(members))
	for id, m := range members {
		if !sel.Matches(m.Tags) {
			continue
		}
		if pl.Zones == ZonesNone {
			m.Zone = ""
		}
		out[id] = m
	}
	return out
}

// distinctZones counts the zones of the members that can hold copies.
func distinctZones(members map[string]Member) int {
	zones := map[string]bool{}
	for _, m := range members {
		if m.CanHold() {
			zones[m.Zone] = true
		}
	}
	return len(zones)
}

// checkReplaceSelectors refuses a replacement that the node selector of a
// resource old holds copies of does not match: the planner would never
// move those copies there.
func (c *Cluster) checkReplaceSelectors(old, replacement string) error {
	tags := c.Members[replacement].Tags
	checked := map[string]bool{}
	for i := range c.Partitions {
		p := &c.Partitions[i]
		name := p.ResourceName()
		if checked[name] || !p.Holds(old) {
			continue
		}
		checked[name] = true
		if nodes := c.PlacementOf(name).Nodes; nodes != "" {
			if sel, _ := ParseNodeSelector(nodes); !sel.Matches(tags) {
				return fmt.Errorf("failover: %q holds copies of resource %s, whose node selector %q does not match the replacement %q: give it the tags, or pick a node that has them", old, name, nodes, replacement)
			}
		}
	}
	return nil
}
