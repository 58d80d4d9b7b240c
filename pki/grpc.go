package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ServerCredentials are the gRPC server's TLS (ServerConfig) with the client's certificate
// verified against the current CA after the handshake. A verified client's AuthInfo is a
// credentials.TLSInfo whose State.VerifiedChains holds the chain (controlplane/auth reads the
// identity from VerifiedChains[0][0]); any other client's is an UnverifiedInfo, so code that
// looks for TLSInfo never takes an unverified certificate for an identity. The
// Authenticate interceptors answer such a client's every RPC with Unauthenticated.
//
// Verifying after the handshake rather than in it (tls.RequireAndVerifyClientCert) is what
// lets a missing or untrusted certificate be refused with gRPC's Unauthenticated and a
// message that says what is wrong: a refused handshake reaches a gRPC client as Unavailable
// ("connection closed"), indistinguishable from a controller that is down. The cost: such a
// client gets an HTTP/2 connection on which every call is refused.
func (r *Reloader) ServerCredentials() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: credentials.NewTLS(r.ServerConfig()), r: r}
}

type serverCreds struct {
	credentials.TransportCredentials
	r *Reloader
}

// UnverifiedInfo is the AuthInfo of a TLS connection whose client presented no certificate,
// or one the CA did not sign for client use.
type UnverifiedInfo struct {
	credentials.CommonAuthInfo
	// Reason says what was wrong; it wraps ErrClientCertificate.
	Reason error
}

// AuthType is not "tls": nothing may mistake this for a verified TLS peer.
func (UnverifiedInfo) AuthType() string { return "tls-unverified" }

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	info, ok := ai.(credentials.TLSInfo)
	if !ok {
		conn.Close()
		return nil, nil, errors.New("pki: TLS handshake returned no TLS state")
	}
	remote := raw.RemoteAddr().String()
	chains, err := c.r.VerifyClient(info.State.PeerCertificates)
	if err != nil {
		c.r.log.Warn("TLS client refused: its calls are answered Unauthenticated", "remote", remote, "error", err)
		return conn, UnverifiedInfo{CommonAuthInfo: info.CommonAuthInfo, Reason: err}, nil
	}
	info.State.VerifiedChains = chains
	leaf := chains[0][0]
	c.r.log.Info("TLS client verified", "remote", remote, "cn", leaf.Subject.CommonName,
		"ou", strings.Join(leaf.Subject.OrganizationalUnit, ","), "serial", Serial(leaf))
	return conn, info, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), r: c.r}
}

// VerifiedPeer is the verified client certificate of ctx's caller.
func VerifiedPeer(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil, status.Error(codes.Unauthenticated, "no TLS connection: the controller accepts only TLS with a client certificate from its CA")
	}
	switch ai := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		if len(ai.State.VerifiedChains) > 0 && len(ai.State.VerifiedChains[0]) > 0 {
			return ai.State.VerifiedChains[0][0], nil
		}
	case UnverifiedInfo:
		if errors.Is(ai.Reason, ErrNoClientCertificate) {
			return nil, status.Error(codes.Unauthenticated, "no client certificate: this controller needs one from its CA (make one with `lvs-controller pki issue DIR --user NAME --role viewer|operator|admin`)")
		}
		return nil, status.Errorf(codes.Unauthenticated, "%v", ai.Reason)
	}
	return nil, status.Error(codes.Unauthenticated, "client certificate not verified")
}

// UnaryAuthenticate refuses, as Unauthenticated, a call whose client has no verified
// certificate. It comes before authorization (controlplane/auth), which says who may do what.
func UnaryAuthenticate(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, err := VerifiedPeer(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamAuthenticate is UnaryAuthenticate for streams.
func StreamAuthenticate(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, err := VerifiedPeer(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}
