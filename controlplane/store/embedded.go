package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// EmbeddedConfig is the single-node etcd a controller runs when no external cluster is given.
type EmbeddedConfig struct {
	DataDir string
	// ClientURL and PeerURL are where the embedded etcd listens. They default to loopback so a
	// controller never exposes its store by accident; two controllers on one machine need
	// different ones, and a clash fails at start with the address named.
	ClientURL string
	PeerURL   string
	// Name of the etcd member; it is part of the data dir's identity.
	Name string
	// LogLevel of etcd's own logger (debug, info, warn, error, fatal); default error.
	LogLevel string
}

// Embedded is a running embedded etcd.
type Embedded struct {
	etcd      *embed.Etcd
	clientURL string
}

// ErrEmbeddedStart is wrapped by every failure to start the embedded etcd.
var ErrEmbeddedStart = errors.New("starting embedded etcd")

// StartEmbedded starts a single-node etcd and waits until it serves.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	ecfg := embed.NewConfig()
	ecfg.Dir = cfg.DataDir
	if cfg.Name != "" {
		ecfg.Name = cfg.Name
	}
	curl, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("%w: --etcd-client-url %q: %w", ErrEmbeddedStart, cfg.ClientURL, err)
	}
	purl, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: --etcd-peer-url %q: %w", ErrEmbeddedStart, cfg.PeerURL, err)
	}
	ecfg.ListenClientUrls = []url.URL{*curl}
	ecfg.AdvertiseClientUrls = []url.URL{*curl}
	ecfg.ListenPeerUrls = []url.URL{*purl}
	ecfg.AdvertisePeerUrls = []url.URL{*purl}
	ecfg.InitialCluster = ecfg.InitialClusterFromName(ecfg.Name)
	// etcd logs through zap; only its errors are worth an operator's attention here.
	ecfg.LogLevel = "error"
	if cfg.LogLevel != "" {
		ecfg.LogLevel = cfg.LogLevel
	}
	ecfg.LogOutputs = []string{"stderr"}
	// The store holds a few objects per cluster; keep the embedded etcd's footprint small.
	ecfg.AutoCompactionMode = "revision"
	ecfg.AutoCompactionRetention = "10000"
	// One apply of 10,000 clusters is one transaction (EmbeddedLimits); the backend quota
	// (etcd's default 2 GiB) holds 10,000 clusters of 10 reals many times over.
	ecfg.MaxTxnOps = uint(EmbeddedLimits().MaxTxnOps)
	ecfg.MaxRequestBytes = uint(EmbeddedLimits().MaxRequestBytes)

	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		return nil, fmt.Errorf("%w (client %s, peer %s, data %s): %w", ErrEmbeddedStart, cfg.ClientURL, cfg.PeerURL, cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("%w: %w", ErrEmbeddedStart, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("%w: not ready after 60s", ErrEmbeddedStart)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("%w: %w", ErrEmbeddedStart, ctx.Err())
	}
	return &Embedded{etcd: e, clientURL: curl.String()}, nil
}

// Endpoint is the client URL to dial.
func (e *Embedded) Endpoint() string { return e.clientURL }

// Err reports a fatal error of the running etcd.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops etcd; its data stays in the data dir.
func (e *Embedded) Close() { e.etcd.Close() }
