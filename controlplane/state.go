package controlplane

import "slices"

// State is a tenant's lifecycle state. The API records intent by moving a tenant into a
// "*-requested" (or deletion-pending) state and answers 202; the supervisor then performs one
// idempotent step per pass and saves the next state together with an Event.
type State string

// Lifecycle states of a tenant. The legal moves between them are listed in Transitions.
const (
	// StateCreationRequested: the tenant is registered and waits for its cell.
	StateCreationRequested State = "creation-requested"
	// StateCreating: the supervisor is starting the cell and waiting for it to be healthy.
	StateCreating State = "creating"
	// StateLive: the cell serves the tenant's host.
	StateLive State = "live"
	// StateCreationFailed: the cell could not be brought up; StateReason says why.
	StateCreationFailed State = "creation-failed"
	// StateSuspendRequested: a super-admin asked to suspend; the host already shows the paused page.
	StateSuspendRequested State = "suspend-requested"
	// StateSuspended: the cell is stopped, data kept, the host answers the paused page (410).
	StateSuspended State = "suspended"
	// StateResumeRequested: a super-admin asked to resume (or cancelled a pending deletion).
	StateResumeRequested State = "resume-requested"
	// StateResumeFailed: the cell could not be brought back; StateReason says why.
	StateResumeFailed State = "resume-failed"
	// StateDeletionPending: deletion was requested; the cell is stopped and the tenant is deleted
	// once its grace period (Tenant.DeleteAt) has passed, unless the deletion is cancelled before
	// (see RestoreState) or the tenant resumed.
	StateDeletionPending State = "deletion-pending"
	// StateDeleting: the supervisor is tearing down the tenant's route, cell and data, one
	// teardown action per step (Tenant.TeardownDone counts the actions done).
	StateDeleting State = "deleting"
	// StateDeletionFailed: teardown failed; the supervisor retries it.
	StateDeletionFailed State = "deletion-failed"
	// StateDeleted: tombstone. The key is free again; the tenant id is never reused.
	StateDeleted State = "deleted"
)

// Transitions is the table of legal state changes: Transitions[from] lists every state a tenant
// in state from may move to. Deleted is terminal.
var Transitions = map[State][]State{
	StateCreationRequested: {StateCreating, StateCreationFailed, StateDeletionPending},
	StateCreating:          {StateLive, StateCreationFailed, StateDeletionPending},
	StateCreationFailed:    {StateCreationRequested, StateDeletionPending},
	StateLive:              {StateSuspendRequested, StateDeletionPending},
	StateSuspendRequested:  {StateSuspended, StateResumeRequested, StateDeletionPending},
	StateSuspended:         {StateResumeRequested, StateDeletionPending},
	StateResumeRequested:   {StateLive, StateResumeFailed, StateSuspendRequested, StateDeletionPending},
	StateResumeFailed:      {StateResumeRequested, StateSuspendRequested, StateDeletionPending},
	StateDeletionPending:   {StateDeleting, StateResumeRequested, StateSuspendRequested, StateCreationRequested},
	StateDeleting:          {StateDeleted, StateDeletionFailed},
	StateDeletionFailed:    {StateDeleting},
	StateDeleted:           nil,
}

// States returns every lifecycle state, in the order of their declaration.
func States() []State {
	return []State{StateCreationRequested, StateCreating, StateLive, StateCreationFailed,
		StateSuspendRequested, StateSuspended, StateResumeRequested, StateResumeFailed,
		StateDeletionPending, StateDeleting, StateDeletionFailed, StateDeleted}
}

// Valid reports whether s is one of the lifecycle states.
func (s State) Valid() bool {
	_, ok := Transitions[s]
	return ok
}

// CanTransition reports whether a tenant in state from may move to state to.
func CanTransition(from, to State) bool { return slices.Contains(Transitions[from], to) }

// CheckTransition returns nil if from → to is legal and a conflict *Error naming both states
// otherwise.
func CheckTransition(from, to State) error {
	if CanTransition(from, to) {
		return nil
	}
	return Errorf(EConflict, "a tenant cannot go from %s to %s", from, to)
}

// Route states of the route table (mirroring atende/traefik): where the tenant's host goes.
const (
	// RouteLive sends the tenant's host to its cell.
	RouteLive = "live"
	// RouteSuspended sends the tenant's host to the paused page (HTTP 410).
	RouteSuspended = "suspended"
)

// RouteState returns how the tenant's host is routed in state s: RouteLive, RouteSuspended, or ""
// when the host is not routed at all (it then gets the "tenant not found" page).
func (s State) RouteState() string {
	switch s {
	case StateLive:
		return RouteLive
	case StateSuspendRequested, StateSuspended, StateResumeRequested, StateResumeFailed, StateDeletionPending:
		return RouteSuspended
	default:
		return ""
	}
}

// WantsCell reports whether a tenant in state s should have a running cell between supervisor
// steps (only live tenants do; creating and resuming tenants get theirs from the step itself).
func (s State) WantsCell() bool { return s == StateLive }

// Settled reports whether s needs no further supervisor step: live, suspended, deleted and the
// failed states that wait for a super-admin (creation-failed, resume-failed).
func (s State) Settled() bool {
	switch s {
	case StateLive, StateSuspended, StateDeleted, StateCreationFailed, StateResumeFailed:
		return true
	}
	return false
}

// RestoreState returns the state a deletion-pending tenant goes back to when its deletion is
// cancelled, given the state it had when the deletion was requested (Tenant.StateBeforeDeletion):
// a tenant that was suspended (or being suspended, or had failed to resume) is suspended again
// (suspend-requested, then suspended once its cell is surely stopped), one that was being created
// is created again (creation-requested), and any other (live, resuming, or unknown because the
// deletion was requested before the state was recorded) is resumed (resume-requested, then live
// once its cell is healthy again).
func RestoreState(before State) State {
	switch before {
	case StateSuspended, StateSuspendRequested, StateResumeFailed:
		return StateSuspendRequested
	case StateCreationRequested, StateCreating, StateCreationFailed:
		return StateCreationRequested
	default:
		return StateResumeRequested
	}
}
