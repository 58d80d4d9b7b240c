package reconcile

// Releasing is how many releases wait for the reconcile in progress: a test waits for it to
// know a release has preempted the reconcile before letting that go on.
func (r *Reconciler) Releasing() int32 { return r.releasing.Load() }
