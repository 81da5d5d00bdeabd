package failover

import (
	"errors"
	"fmt"
)

// CommandKind names what a Command does.
type CommandKind string

const (
	// CmdBootstrap sets the settings, the first members and the initial
	// partition table. It applies once; a second bootstrap is refused.
	CmdBootstrap CommandKind = "bootstrap"
	// CmdUpsertMember adds a member or updates its addresses, zone, weight
	// and raft ID. Status, voter flag and health are left alone unless the
	// member is new (then it starts alive) or was failed or left (then it is
	// a rejoin: alive again, incarnation up).
	CmdUpsertMember CommandKind = "upsert_member"
	// CmdSetStatus changes a member's status and, in the same raft entry,
	// applies the planner actions that go with it (for a failure: the
	// promotions).
	CmdSetStatus CommandKind = "set_status"
	// CmdSetVoter records whether a member is a raft voter.
	CmdSetVoter CommandKind = "set_voter"
	// CmdSetAppHealth records whether a member's app is healthy.
	CmdSetAppHealth CommandKind = "set_app_health"
	// CmdApplyActions applies planner actions, each compare-and-set on its
	// partition's epoch.
	CmdApplyActions CommandKind = "apply_actions"
	// CmdRemoveMember forgets a member that holds nothing any more.
	CmdRemoveMember CommandKind = "remove_member"
	// CmdForgetMember forgets a member that is gone for good (agent
	// force-leave, or failed or departed for longer than -reap-after): one
	// that holds nothing is removed at once; one that still holds copies is
	// marked left and Forget, with the promotions that go with it
	// (Actions), so that the planner re-creates its copies elsewhere at once,
	// and the leader removes it when it holds nothing. Whether the member is
	// really gone is the proposer's judgement, as for CmdSetStatus.
	CmdForgetMember CommandKind = "forget_member"
	// CmdSetMaintenance switches the cluster-wide maintenance freeze on or
	// off (Command.Maintenance).
	CmdSetMaintenance CommandKind = "set_maintenance"
	// CmdCopiesLost records that the app of Node no longer has copies the
	// table gives Node (it said so at its start: its data dir was wiped or
	// lost). Actions are ActionDropLostCopy actions about Node, made by
	// PlanLostCopies, each compare-and-set on its partition's epoch; a
	// command with any other action, or about another node, is refused
	// whole.
	CmdCopiesLost CommandKind = "copies_lost"
	// CmdRestartMember marks Node restarting (a planned restart) for
	// RestartGrace, with the promotions of its primaries (Actions) in the
	// same entry. Refused (ErrRestartRefused) when Node is not in service,
	// or when MaxUnavailable members (at least 1) are restarting already.
	CmdRestartMember CommandKind = "restart_member"
	// CmdRestartBack takes Node, restarting, back: alive, a new
	// incarnation. Its own agent proposes it once it runs again.
	CmdRestartBack CommandKind = "restart_back"
	// CmdRollingRestart starts a rolling restart (Rolling: its Order and
	// MaxUnavailable); refused while one runs.
	CmdRollingRestart CommandKind = "rolling_restart"
	// CmdRollingStep records one step of the running rolling restart
	// (Step).
	CmdRollingStep CommandKind = "rolling_step"
	// CmdSetPin pins a partition on a node, or unpins it (agent move,
	// Command.Pin; see pin.go). It changes no placement by itself: the
	// planner acts on the pin. A pin that fails CheckPin is refused.
	CmdSetPin CommandKind = "set_pin"
	// CmdReplaceMember starts the replacement of Node by
	// Command.Replacement (agent replace OLD NEW; see replace.go): Node's
	// ReplacedBy is set, and the planner moves Node's copies to the
	// replacement, add before remove. An empty Replacement calls the
	// replacement off. One that fails CheckReplace is refused.
	CmdReplaceMember CommandKind = "replace_member"
	// CmdCreateResource adds the resource Command.Resource with its
	// partitions (Table, computed by the proposer with LayoutResource),
	// numbered after the table's last row.
	CmdCreateResource CommandKind = "create_resource"
	// CmdDeleteResource retires every partition of the resource named by
	// Command.Resource (not the default one): their copies are released.
	CmdDeleteResource CommandKind = "delete_resource"
	// CmdSetReplicationFactor sets the replication factor of the resource
	// named by Command.Resource to its ReplicationFactor; the planner adds
	// or drops copies to match.
	CmdSetReplicationFactor CommandKind = "set_replication_factor"
	// CmdSplitPartition starts the split of Command.Split.Partition (see
	// split.go): two pending children, the parent marked.
	CmdSplitPartition CommandKind = "split_partition"
	// CmdFinishSplit activates the children of Command.Split.Partition and
	// retires it, once the app of Node (its primary) split the data at the
	// parent's epoch Command.Split.Epoch.
	CmdFinishSplit CommandKind = "finish_split"
	// CmdSetTargetSize sets the target size (automatic splits) of the
	// resource named by Command.Resource to its TargetSize.
	CmdSetTargetSize CommandKind = "set_target_size"
	// CmdSetPlacement sets the zones rule and the node selector of the
	// resource named by Command.Resource to its Zones and Nodes (see
	// placement.go); the planner moves the copies that no longer fit, add
	// before remove.
	CmdSetPlacement CommandKind = "set_placement"
	// CmdSetTags replaces the tags of member Node with Command.Tags (its
	// agent's -tags; the agent proposes it itself once registered).
	CmdSetTags CommandKind = "set_tags"
)

// Command is one entry of the replicated log. Exactly the fields its Kind
// names are used; the rest are ignored.
type Command struct {
	Kind CommandKind `json:"kind"`
	// At is the proposer's wall clock in unix nanoseconds: the only source of
	// time for the state machine, so that every replica agrees.
	At int64 `json:"at"`
	// Settings and Members, for CmdBootstrap.
	Settings *Settings `json:"settings,omitempty"`
	Members  []Member  `json:"members,omitempty"`
	// Table, for CmdBootstrap and CmdCreateResource: the initial partition table, computed once
	// by the proposer (InitialTable) and carried in the entry, so that
	// every agent applies the same table whatever version of the layout
	// code it runs. When absent, each agent computes InitialTable itself.
	Table []Partition `json:"table,omitempty"`
	// Member, for CmdUpsertMember.
	Member *Member `json:"member,omitempty"`
	// Node is the member a status, voter, health, removal or forget command
	// is about.
	Node string `json:"node,omitempty"`
	// Status, for CmdSetStatus.
	Status MemberStatus `json:"status,omitempty"`
	// Voter, for CmdSetVoter.
	Voter bool `json:"voter,omitempty"`
	// AppUnhealthy, for CmdSetAppHealth.
	AppUnhealthy bool `json:"app_unhealthy,omitempty"`
	// Actions, for CmdApplyActions, CmdSetStatus and CmdForgetMember.
	Actions []Action `json:"actions,omitempty"`
	// Maintenance, for CmdSetMaintenance.
	Maintenance bool `json:"maintenance,omitempty"`
	// RestartGrace (nanoseconds) and MaxUnavailable, for
	// CmdRestartMember.
	RestartGrace   int64 `json:"restart_grace,omitempty"`
	MaxUnavailable int   `json:"max_unavailable,omitempty"`
	// Rolling, for CmdRollingRestart.
	Rolling *RollingRestart `json:"rolling,omitempty"`
	// Step, for CmdRollingStep.
	Step *RollingStep `json:"step,omitempty"`
	// Pin, for CmdSetPin.
	Pin *PinChange `json:"pin,omitempty"`
	// Replacement, for CmdReplaceMember: the member that takes Node's
	// copies ("" calls a replacement off).
	Replacement string `json:"replacement,omitempty"`
	// Resource, for CmdCreateResource (the whole resource),
	// CmdDeleteResource (its Name) and CmdSetReplicationFactor (Name and
	// ReplicationFactor).
	Resource *Resource `json:"resource,omitempty"`
	// Split, for CmdSplitPartition and CmdFinishSplit.
	Split *SplitRequest `json:"split,omitempty"`
	// Tags, for CmdSetTags.
	Tags map[string]string `json:"tags,omitempty"`
}

// Result says what applying a command did.
type Result struct {
	// Applied counts the actions that applied.
	Applied int `json:"applied"`
	// Stale counts the actions skipped because their partition's epoch had
	// moved on since they were planned (a deposed leader's plan, or a plan
	// overtaken by another).
	Stale int `json:"stale"`
	// Changed lists the partitions whose placement changed.
	Changed []int `json:"changed,omitempty"`
}

// ErrAlreadyBootstrapped is returned for a second bootstrap command.
var ErrAlreadyBootstrapped = errors.New("failover: cluster already bootstrapped")

// ErrUnknownMember is returned for commands about a node the cluster does
// not know.
var ErrUnknownMember = errors.New("failover: unknown member")

// Apply applies cmd to c. An error means c is unchanged: commands are checked
// before anything is modified, and actions that no longer fit the state are
// skipped individually (counted in Result.Stale) rather than failing the
// whole command, so that every replica reaches the same state.
func (c *Cluster) Apply(cmd Command) (Result, error) {
	switch cmd.Kind {
	case CmdBootstrap:
		return Result{}, c.applyBootstrap(cmd)
	case CmdUpsertMember:
		return Result{}, c.applyUpsertMember(cmd)
	case CmdSetStatus:
		m, ok := c.Members[cmd.Node]
		if !ok {
			return Result{}, fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
		}
		if !cmd.Status.Valid() {
			return Result{}, fmt.Errorf("failover: unknown status %q", cmd.Status)
		}
		if err := onlyPlannerActions(cmd); err != nil {
			return Result{}, err
		}
		if m.Status != cmd.Status {
			m.Status = cmd.Status
			m.StatusSince = cmd.At
			c.Members[cmd.Node] = m
		}
		return c.applyActions(cmd.Actions, cmd.At), nil
	case CmdSetVoter:
		m, ok := c.Members[cmd.Node]
		if !ok {
			return Result{}, fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
		}
		m.Voter = cmd.Voter
		c.Members[cmd.Node] = m
		return Result{}, nil
	case CmdSetAppHealth:
		m, ok := c.Members[cmd.Node]
		if !ok {
			return Result{}, fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
		}
		m.AppUnhealthy = cmd.AppUnhealthy
		c.Members[cmd.Node] = m
		return Result{}, nil
	case CmdApplyActions:
		if !c.Bootstrapped {
			return Result{}, errors.New("failover: actions before bootstrap")
		}
		if err := onlyPlannerActions(cmd); err != nil {
			return Result{}, err
		}
		return c.applyActions(cmd.Actions, cmd.At), nil
	case CmdCopiesLost:
		if err := c.checkCopiesLost(cmd); err != nil {
			return Result{}, err
		}
		return c.applyActions(cmd.Actions, cmd.At), nil
	case CmdSetMaintenance:
		c.Maintenance = cmd.Maintenance
		return Result{}, nil
	case CmdSetPin:
		return Result{}, c.applyPin(cmd.Pin)
	case CmdReplaceMember:
		return Result{}, c.applyReplace(cmd.Node, cmd.Replacement)
	case CmdCreateResource:
		return Result{}, c.applyCreateResource(cmd)
	case CmdDeleteResource:
		return c.applyDeleteResource(cmd)
	case CmdSetReplicationFactor:
		return Result{}, c.applySetReplicationFactor(cmd)
	case CmdSplitPartition:
		return c.applySplit(cmd)
	case CmdFinishSplit:
		return c.applyFinishSplit(cmd)
	case CmdSetTargetSize:
		return Result{}, c.applySetTargetSize(cmd)
	case CmdSetPlacement:
		return Result{}, c.applySetPlacement(cmd)
	case CmdSetTags:
		return Result{}, c.applySetTags(cmd)
	case CmdRemoveMember:
		if _, ok := c.Members[cmd.Node]; !ok {
			return Result{}, fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
		}
		if err := c.checkHoldsNothing(cmd.Node); err != nil {
			return Result{}, err
		}
		delete(c.Members, cmd.Node)
		c.forgetNode(cmd.Node)
		return Result{}, nil
	case CmdForgetMember:
		m, ok := c.Members[cmd.Node]
		if !ok {
			return Result{}, fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
		}
		if c.checkHoldsNothing(cmd.Node) == nil {
			delete(c.Members, cmd.Node)
			c.forgetNode(cmd.Node)
			return Result{}, nil
		}
		if m.Status != StatusLeft {
			m.Status = StatusLeft
			m.StatusSince = cmd.At
		}
		m.Forget = true
		m.Voter = false
		c.Members[cmd.Node] = m
		return c.applyActions(cmd.Actions, cmd.At), nil
	case CmdRestartMember:
		return c.applyRestartMember(cmd)
	case CmdRestartBack:
		return Result{}, c.applyRestartBack(cmd)
	case CmdRollingRestart:
		return Result{}, c.applyRollingRestart(cmd)
	case CmdRollingStep:
		return Result{}, c.applyRollingStep(cmd)
	}
	return Result{}, fmt.Errorf("failover: unknown command kind %q", cmd.Kind)
}

// checkHoldsNothing returns an error naming a partition that node holds a
// copy of or is copying, if there is one.
func (c *Cluster) checkHoldsNothing(node string) error {
	for _, p := range c.Partitions {
		if p.Holds(node) {
			return fmt.Errorf("failover: member %q still holds partition %d", node, p.ID)
		}
		if _, ok := p.MigrationTo(node); ok {
			return fmt.Errorf("failover: member %q still has a migration of partition %d", node, p.ID)
		}
	}
	return nil
}

func (c *Cluster) applyBootstrap(cmd Command) error {
	if c.Bootstrapped {
		return ErrAlreadyBootstrapped
	}
	if cmd.Settings == nil {
		return errors.New("failover: bootstrap without settings")
	}
	if err := cmd.Settings.Validate(); err != nil {
		return err
	}
	if len(cmd.Members) == 0 {
		return errors.New("failover: bootstrap without members")
	}
	members := make(map[string]Member, len(cmd.Members)+len(c.Members))
	for id, m := range c.Members {
		members[id] = m
	}
	for _, m := range cmd.Members {
		if err := validateNewMember(m); err != nil {
			return err
		}
		if _, dup := members[m.ID]; dup {
			if prev, known := c.Members[m.ID]; !known || prev.ID != m.ID {
				return fmt.Errorf("failover: bootstrap names member %q twice", m.ID)
			}
		}
		m.Status = StatusAlive
		m.StatusSince = cmd.At
		if m.Incarnation == 0 {
			m.Incarnation = 1
		}
		members[m.ID] = m
	}
	table := cmd.Table
	if table == nil {
		table = InitialTable(*cmd.Settings, members)
	} else {
		table = clonePartitions(table)
		check := &Cluster{Bootstrapped: true, Settings: *cmd.Settings, Members: members, Partitions: table}
		if err := check.Validate(); err != nil {
			return fmt.Errorf("failover: bootstrap table: %w", err)
		}
		for _, p := range table {
			if p.Epoch == 0 || len(p.Migrations) > 0 {
				return fmt.Errorf("failover: bootstrap table: partition %d must start at an epoch above 0 with no migration", p.ID)
			}
		}
	}
	c.Bootstrapped = true
	c.Settings = *cmd.Settings
	c.Members = members
	c.Partitions = table
	return nil
}

func clonePartitions(in []Partition) []Partition {
	out := make([]Partition, len(in))
	for i, p := range in {
		out[i] = p.Clone()
	}
	return out
}

func validateNewMember(m Member) error {
	if m.ID == "" {
		return errors.New("failover: member without ID")
	}
	if len(m.ID) > MaxNodeIDLength {
		return fmt.Errorf("failover: node ID %q is longer than %d bytes", m.ID, MaxNodeIDLength)
	}
	if m.Weight < 0 {
		return fmt.Errorf("failover: member %q has negative weight", m.ID)
	}
	return ValidateTags(m.Tags)
}

// MaxNodeIDLength keeps node IDs short enough for gossip metadata, raft
// server IDs and log lines.
const MaxNodeIDLength = 64

func (c *Cluster) applyUpsertMember(cmd Command) error {
	if cmd.Member == nil {
		return errors.New("failover: upsert without member")
	}
	in := *cmd.Member
	if err := validateNewMember(in); err != nil {
		return err
	}
	cur, known := c.Members[in.ID]
	if !known {
		in.Status = StatusAlive
		in.StatusSince = cmd.At
		in.Voter = false
		in.AppUnhealthy = false
		if in.Incarnation == 0 {
			in.Incarnation = 1
		}
		c.Members[in.ID] = in
		return nil
	}
	cur.RaftID = in.RaftID
	cur.GossipAddr = in.GossipAddr
	cur.RaftAddr = in.RaftAddr
	cur.APIAddr = in.APIAddr
	cur.AppAddr = in.AppAddr
	cur.Zone = in.Zone
	cur.Weight = in.Weight
	if cur.Status == StatusFailed || cur.Status == StatusLeft {
		// A rejoin: the node is back under its old ID (and no longer to
		// be forgotten, if it was).
		cur.Status = StatusAlive
		cur.StatusSince = cmd.At
		cur.Incarnation++
		cur.Voter = false
		cur.Forget = false
		cur.ReplacedBy = ""
	}
	c.Members[in.ID] = cur
	return nil
}
