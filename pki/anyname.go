package pki

import (
	"crypto/tls"
	"errors"

	"google.golang.org/grpc/credentials"
)

// ClientCredentialsAny are ClientCredentials for a client given several controllers
// (lvsctl and agents with --controller a,b,c): the server's certificate must chain to the
// CA, be for server use, and hold one of names. Which of the listed controllers answered
// is not known to the TLS configuration (gRPC picks the address), and each is a controller
// of the same CA, so any listed name will do.
func (r *Reloader) ClientCredentialsAny(names []string) credentials.TransportCredentials {
	if len(names) == 1 {
		return r.ClientCredentials(names[0])
	}
	return credentials.NewTLS(r.ClientConfigAny(names))
}

// ClientConfigAny is ClientConfig for a server that may be any of names (the members of an
// etcd cluster, the listed controllers).
func (r *Reloader) ClientConfigAny(names []string) *tls.Config {
	if len(names) == 1 {
		return r.ClientConfig(names[0])
	}
	cfg := r.ClientConfig("")
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		var errs []error
		for _, n := range names {
			err := r.verifyServer(cs.PeerCertificates, n)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	return cfg
}
