// Package ha lets several controllers share one etcd cluster: each registers itself under
// ControllersPrefix on its session's lease, and one leads, by etcd's election
// (go.etcd.io/etcd/client/v3/concurrency) under ElectionPrefix. The leader alone assigns
// roles, its writes fenced by its election key (store.LeaderFence): a controller whose
// session expired while it kept running (a paused process) cannot write a role, whatever
// it believes.
package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lvsctl/lvsctl/controlplane/store"
)

const (
	// ElectionPrefix holds the candidates' keys; the oldest leads.
	ElectionPrefix = store.Prefix + "election/"
	// ControllersPrefix holds one key per live controller: ControllersPrefix + address.
	ControllersPrefix = store.Prefix + "controllers/"
)

// DefaultTTL is the session's lease: a controller that stops (killed, paused, cut off from
// etcd) loses the lead at most this long after its last keep-alive. etcd raises shorter
// leases to its own minimum (1.5 election timeouts, about 2 s with its defaults).
const DefaultTTL = 2 * time.Second

// Member is a controller's registration, as stored (JSON).
type Member struct {
	Address string    `json:"address"`
	Started time.Time `json:"started"`
	Leader  bool      `json:"-"`
}

// Config configures an Elector.
type Config struct {
	Client *clientv3.Client
	// Address is what other controllers dial to reach this one (--advertise); it names the
	// registration and is the election's value.
	Address string
	TTL     time.Duration
	Logger  *slog.Logger
}

// Elector campaigns for the lead, again and again, and keeps the registration.
type Elector struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	// prepared is the session Prepare opened, for Run's first term.
	prepared *concurrency.Session
}

// New returns an Elector; Run campaigns.
func New(cfg Config) *Elector {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, log: cfg.Logger.With("component", "election"), started: time.Now()}
}

// Run keeps a session, registers the controller on it and campaigns; each time it wins it
// calls lead with a context that ends when the lead does (the session's lease lost, or ctx
// ended) and the fence of the term. lead must return once its context ends. Run returns
// when ctx ends; it resigns then, so another controller leads at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, fence store.LeaderFence)) error {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := e.term(ctx, lead)
		if ctx.Err() != nil {
			return nil
		}
		e.log.Warn("election session ended; campaigning again", "error", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		wait = min(2*wait, 2*time.Second)
	}
	return nil
}

// Prepare opens the first session and writes the registration and the candidate's
// election key at once, so that a controller's own keys are in etcd when Start returns
// (the store's revision does not move under a caller that just applied); Run campaigns
// with them. sessCtx bounds the session (Serve's context is not known yet).
func (e *Elector) Prepare(ctx, sessCtx context.Context) error {
	s, err := e.register(ctx, sessCtx)
	if err != nil {
		return err
	}
	e.prepared = s
	return nil
}

// register opens a session and writes the registration and the election key (as
// concurrency.Election.Campaign would create it: it finds it and goes on waiting).
func (e *Elector) register(ctx, sessCtx context.Context) (*concurrency.Session, error) {
	ttl := max(1, int(e.cfg.TTL.Round(time.Second)/time.Second))
	s, err := concurrency.NewSession(e.cfg.Client, concurrency.WithTTL(ttl), concurrency.WithContext(sessCtx))
	if err != nil {
		return nil, fmt.Errorf("%w: election session: %w", store.ErrUnavailable, err)
	}
	val, _ := json.Marshal(Member{Address: e.cfg.Address, Started: e.started})
	key := fmt.Sprintf("%s%x", ElectionPrefix, s.Lease())
	_, err = e.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(
		clientv3.OpPut(ControllersPrefix+e.cfg.Address, string(val), clientv3.WithLease(s.Lease())),
		clientv3.OpPut(key, e.cfg.Address, clientv3.WithLease(s.Lease()))).Commit()
	if err != nil {
		s.Orphan()
		return nil, fmt.Errorf("%w: registering %s: %w", store.ErrUnavailable, ControllersPrefix+e.cfg.Address, err)
	}
	return s, nil
}

// term is one session: registration, campaign, and the lead if won.
func (e *Elector) term(ctx context.Context, lead func(ctx context.Context, fence store.LeaderFence)) error {
	s := e.prepared
	e.prepared = nil
	if s == nil {
		var err error
		if s, err = e.register(ctx, ctx); err != nil {
			return err
		}
	}
	defer func() {
		// Revokes the lease: the registration and the election key go at once, and the
		// next candidate leads without waiting for the TTL.
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _ = e.cfg.Client.Revoke(rctx, s.Lease())
		s.Orphan()
	}()
	el := concurrency.NewElection(s, ElectionPrefix)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fence *store.LeaderFence // set once the campaign is won
	var fenceMu sync.Mutex
	go func() {
		select {
		case <-s.Done():
		case <-cctx.Done():
			return
		}
		fenceMu.Lock()
		f := fence
		fenceMu.Unlock()
		if f != nil {
			// A leader's session ends when etcd stops answering its keep-alives, which an
			// outage of etcd alone also does: the term goes on (its role writes cannot
			// land anyway, and agents keep their answers, as with one controller) until
			// etcd says the election key is gone, i.e. someone else may lead.
			e.waitGone(cctx, *f)
		}
		cancel()
	}()
	if err := el.Campaign(cctx, e.cfg.Address); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaign: %w", err)
	}
	f := store.LeaderFence{Key: el.Key(), Rev: el.Rev()}
	fenceMu.Lock()
	fence = &f
	fenceMu.Unlock()
	e.log.Info("leading", "address", e.cfg.Address, "key", f.Key, "revision", f.Rev)
	lead(cctx, f)
	e.log.Info("no longer leading", "address", e.cfg.Address, "session_lost", ctx.Err() == nil)
	if ctx.Err() == nil {
		select {
		case <-s.Done():
			return errors.New("the session's lease expired")
		default:
		}
	}
	return nil
}

// waitGone returns once etcd answers that the fence's key is gone (or recreated), or ctx
// ends; it retries while etcd does not answer.
func (e *Elector) waitGone(ctx context.Context, f store.LeaderFence) {
	logged := false
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := e.cfg.Client.Get(gctx, f.Key)
		cancel()
		if err == nil && (len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != f.Rev) {
			return
		}
		if !logged {
			e.log.Warn("election session lost; leading on until etcd says another controller may lead", "key", f.Key, "error", err)
			logged = true
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// Leader is the address of the leading controller ("" when none leads), read from etcd.
func Leader(ctx context.Context, c *clientv3.Client) (string, error) {
	resp, err := c.Get(ctx, ElectionPrefix, clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("%w: reading %s: %w", store.ErrUnavailable, ElectionPrefix, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// List reads every registered controller, by address, the leader marked.
func List(ctx context.Context, c *clientv3.Client) ([]Member, error) {
	resp, err := c.Get(ctx, ControllersPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", store.ErrUnavailable, ControllersPrefix, err)
	}
	leader, err := Leader(ctx, c)
	if err != nil {
		return nil, err
	}
	var out []Member
	for _, kv := range resp.Kvs {
		var m Member
		if err := json.Unmarshal(kv.Value, &m); err != nil || m.Address == "" {
			// Not ours to refuse the listing for: named by its key.
			m = Member{Address: strings.TrimPrefix(string(kv.Key), ControllersPrefix)}
		}
		m.Leader = leader != "" && m.Address == leader
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Address, b.Address) })
	return out, nil
}
