package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// errWatchEnded is a Watch stream that the controller closed: the user asked to watch until
// interrupted, so scripts must see that it stopped early.
var errWatchEnded = errors.New("the controller ended the watch")

// fleetState is the latest status of every director, by name.
type fleetState map[string]*lvsctlv1.DirectorStatus

func newFleetState(ds []*lvsctlv1.DirectorStatus) fleetState {
	f := fleetState{}
	for _, d := range ds {
		f[d.GetDirector()] = d
	}
	return f
}

// update records a director's status from Watch and reports whether the view changed. A
// director that the controller forgot comes with only its name: it leaves the view, as it
// has left List.
func (f fleetState) update(d *lvsctlv1.DirectorStatus) bool {
	name := d.GetDirector()
	if proto.Equal(d, &lvsctlv1.DirectorStatus{Director: name}) {
		_, had := f[name]
		delete(f, name)
		return had
	}
	// last_seen moves with every heartbeat; on its own it is not a change worth a reprint.
	if old, ok := f[name]; ok && sameButLastSeen(old, d) {
		f[name] = d
		return false
	}
	f[name] = d
	return true
}

// sorted returns the directors sorted by name.
func (f fleetState) sorted() []*lvsctlv1.DirectorStatus {
	out := make([]*lvsctlv1.DirectorStatus, 0, len(f))
	for _, name := range slices.Sorted(maps.Keys(f)) {
		out = append(out, f[name])
	}
	return out
}

// fleetWatch is the fleet's status from List, then every change from Watch. A goroutine reads
// the stream so that the caller can wait on the stream and a ticker at once.
type fleetWatch struct {
	initial *lvsctlv1.StatusServiceListResponse
	updates <-chan *lvsctlv1.DirectorStatus
	// ended receives how the stream ended: nil when ctx was cancelled (Ctrl-C), else the error.
	ended <-chan error
	close func()
}

// watchFleet watches the fleet as req asks: the stream's first message is the complete
// fleet, then each change follows. The caller must call close.
func (o *options) watchFleet(ctx context.Context, req *lvsctlv1.StatusServiceWatchRequest) (*fleetWatch, error) {
	conn, err := o.dial()
	if err != nil {
		return nil, err
	}
	client := lvsctlv1.NewStatusServiceClient(conn)
	// The stream has no deadline: it lasts until the user stops it.
	streamCtx, stop := context.WithCancel(ctx)
	fail := func(err error) (*fleetWatch, error) {
		stop()
		conn.Close()
		return nil, err
	}
	stream, err := client.Watch(streamCtx, req)
	if err != nil {
		return fail(o.fromRPC(err))
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return fail(errWatchEnded)
	}
	if err != nil {
		return fail(o.fromRPC(err))
	}
	initial := first.GetInitial()
	if initial == nil {
		return fail(fmt.Errorf("controller %s: the watch did not start with the fleet's status (controller too old?)", o.controller))
	}
	sortDirectors(initial.GetDirectors())
	updates := make(chan *lvsctlv1.DirectorStatus)
	ended := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			resp, err := stream.Recv()
			switch {
			case ctx.Err() != nil:
				ended <- nil
				return
			case errors.Is(err, io.EOF):
				ended <- errWatchEnded
				return
			case err != nil:
				ended <- o.fromRPC(err)
				return
			}
			select {
			case updates <- resp.GetDirector():
			case <-streamCtx.Done():
				ended <- nil
				return
			}
		}
	})
	return &fleetWatch{initial: initial, updates: updates, ended: ended, close: func() {
		stop()
		wg.Wait()
		conn.Close()
	}}, nil
}

func sameButLastSeen(a, b *lvsctlv1.DirectorStatus) bool {
	a2, b2 := proto.CloneOf(a), proto.CloneOf(b)
	a2.LastSeen, b2.LastSeen = nil, nil
	// A peer's heard_ago_ms moves with every report too; whether the peer is reachable is
	// the change that matters, and is compared.
	for _, d := range []*lvsctlv1.DirectorStatus{a2, b2} {
		for _, p := range d.GetPeers() {
			p.HeardAgoMs = 0
		}
	}
	return proto.Equal(a2, b2)
}
