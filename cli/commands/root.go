// Package commands is lvsctl: cobra commands that read manifests, check them with package
// validate, and talk to the controller's ConfigService and StatusService over gRPC.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/cli/printer"
	"github.com/lvsctl/lvsctl/endpoints"
	"github.com/lvsctl/lvsctl/pki"
)

// Exit codes. diff follows diff(1) and kubectl diff: 1 means "differences", so its errors
// exit with 2; every other command exits 1 on error.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitDifferences = 1
	ExitDiffError   = 2
)

// MaxMessageBytes bounds one request or reply, as the controller does (fanout.MaxMessageBytes).
// gRPC's default 4 MiB failed `get clusters` and `status` at 10,000 clusters; the sizes
// measured at 10,000 clusters x 10 real servers are a few MiB.
const MaxMessageBytes = 64 << 20

// DefaultController is where lvsctl looks for the controller without --controller or
// LVSCTL_CONTROLLER.
const DefaultController = "127.0.0.1:7443"

// Streams are the command's standard input and outputs (swapped for buffers in tests).
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
	// OutIsTerminal says whether Out is a terminal, which makes top draw full-screen. Nil
	// means: Out is an *os.File that is a character device.
	OutIsTerminal func() bool
	// TerminalRows is the terminal's height, so a full-screen top fits it (0: unknown). Nil
	// means: ask the kernel about Out.
	TerminalRows func() int
}

func (s Streams) terminalRows() int {
	if s.TerminalRows != nil {
		return s.TerminalRows()
	}
	f, ok := s.Out.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Row)
}

func (s Streams) outIsTerminal() bool {
	if s.OutIsTerminal != nil {
		return s.OutIsTerminal()
	}
	f, ok := s.Out.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// errDifferences is what diff returns when it found differences: exit 1, nothing more to say.
var errDifferences = errors.New("differences found")

// errInsecureRemote refuses plaintext to a controller that is not on loopback.
var errInsecureRemote = errors.New("plaintext gRPC (--insecure) is allowed to a controller on loopback only")

type options struct {
	streams    Streams
	controller string
	insecure   bool
	timeout    time.Duration
	// cert, key and ca are the operator's TLS files (--cert, --key, --ca).
	cert, key, ca string
}

// Run runs lvsctl with args (without the program name) and returns the exit code. getenv
// supplies the environment (os.Getenv in main).
func Run(ctx context.Context, args []string, s Streams, getenv func(string) string) int {
	root := NewRoot(s, getenv)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	isDiff := cmd != nil && cmd.Name() == "diff"
	if errors.Is(err, errDifferences) {
		return ExitDifferences
	}
	fmt.Fprintf(s.Err, "error: %v\n", err)
	if isDiff {
		return ExitDiffError
	}
	return ExitError
}

// NewRoot builds the command tree.
func NewRoot(s Streams, getenv func(string) string) *cobra.Command {
	o := &options{streams: s}
	root := &cobra.Command{
		Use:   "lvsctl",
		Short: "lvsctl manages IPVS clusters on a fleet of LVS directors",
		// Errors are printed once by Run, as the server's message; usage only on flag errors.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	controller := getenv("LVSCTL_CONTROLLER")
	if controller == "" {
		controller = DefaultController
	}
	insecureDefault, _ := strconv.ParseBool(getenv("LVSCTL_INSECURE"))
	root.PersistentFlags().StringVar(&o.controller, "controller", controller, "controller address HOST:PORT, or several comma-separated: any that answers (env LVSCTL_CONTROLLER)")
	root.PersistentFlags().BoolVar(&o.insecure, "insecure", insecureDefault, "plaintext gRPC, for a controller on loopback (env LVSCTL_INSECURE)")
	root.PersistentFlags().DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of each request to the controller")
	// --cert, --key, --ca and LVSCTL_CERT, LVSCTL_KEY, LVSCTL_CA are the contract;
	// --tls-cert, --tls-key, --tls-ca and LVSCTL_TLS_* are accepted as the same.
	home := getenv("HOME")
	for _, f := range []struct {
		p          *string
		name, file string
		usage      string
	}{
		{&o.cert, "cert", "client.crt", "your client certificate ('lvs-controller pki issue DIR --user NAME --role ROLE' makes DIR/user-NAME.crt)"},
		{&o.key, "key", "client.key", "the key of --cert"},
		{&o.ca, "ca", "ca.crt", "the CA bundle that verifies the controller's certificate (DIR/ca.crt)"},
	} {
		env := "LVSCTL_" + strings.ToUpper(f.name)
		def := getenv(env)
		if def == "" {
			def = getenv("LVSCTL_TLS_" + strings.ToUpper(f.name))
		}
		if def == "" && home != "" {
			def = filepath.Join(home, ".config", "lvsctl", f.file)
		}
		root.PersistentFlags().StringVar(f.p, f.name, def, f.usage+" (env "+env+")")
	}
	root.SetGlobalNormalizationFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		switch name {
		case "tls-cert", "tls-key", "tls-ca":
			name = strings.TrimPrefix(name, "tls-")
		}
		return pflag.NormalizedName(name)
	})
	root.AddCommand(
		newApplyCmd(o),
		newDiffCmd(o),
		newGetCmd(o),
		newDescribeCmd(o),
		newDeleteCmd(o),
		newStatusCmd(o),
		newTopCmd(o),
		newFailoverCmd(o),
		newDrainCmd(o),
		newEnableCmd(o),
		newHistoryCmd(o),
		newRollbackCmd(o),
		newImportCmd(o),
		newExportCmd(o),
	)
	return root
}

// dial connects to the controller. grpc.NewClient connects lazily, so errors show on the
// first call.
func (o *options) dial() (*grpc.ClientConn, error) {
	creds, err := o.credentials()
	if err != nil {
		return nil, err
	}
	addrs, err := endpoints.Parse(o.controller)
	if err != nil {
		return nil, fmt.Errorf("--controller: %w", err)
	}
	// Several controllers: pick_first over them (package endpoints); a command goes to one
	// that answers.
	target, opts := endpoints.Target(addrs)
	conn, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)))...)
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", o.controller, err)
	}
	return conn, nil
}

// credentials are TLS with the operator's certificate, or plaintext on loopback.
func (o *options) credentials() (credentials.TransportCredentials, error) {
	if o.insecure {
		if !endpoints.AllLoopback(o.controller) {
			return nil, fmt.Errorf("%w: --controller %s: use TLS (--ca, --cert, --key)", errInsecureRemote, o.controller)
		}
		return insecure.NewCredentials(), nil
	}
	addrs, err := endpoints.Parse(o.controller)
	if err != nil {
		return nil, fmt.Errorf("--controller: %w", err)
	}
	// lvsctl runs for one command: the files are read once (a long `top` keeps the
	// certificate it started with).
	r, err := pki.NewReloader(pki.ReloaderConfig{Files: pki.Files{Cert: o.cert, Key: o.key, CA: o.ca,
		CertFlag: "--cert (env LVSCTL_CERT)", KeyFlag: "--key (env LVSCTL_KEY)", CAFlag: "--ca (env LVSCTL_CA)"}})
	if err != nil {
		return nil, fmt.Errorf("%w; make certificates with `lvs-controller pki init DIR --user NAME:ROLE` (or `pki issue DIR --user NAME --role ROLE`) and pass --ca DIR/ca.crt --cert DIR/user-NAME.crt --key DIR/user-NAME.key, or pass --insecure for a controller on loopback", err)
	}
	// The host part of --controller (of one of them, if several) must be among the
	// controller certificate's SANs.
	return r.ClientCredentialsAny(endpoints.Hosts(addrs)), nil
}

func (o *options) context(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.timeout)
}

// rpcError shows a gRPC error as the server's message (the controller writes messages for
// operators, e.g. `cluster "wms": ports[4].ports: range 5000-1024 is reversed`) while keeping
// the status for errors.As and status.Code.
type rpcError struct {
	prefix string
	st     *status.Status
}

func (e *rpcError) Error() string              { return e.prefix + e.st.Message() }
func (e *rpcError) GRPCStatus() *status.Status { return e.st }

// fromRPC converts a gRPC error for printing. Errors of the connection itself, rather than the
// server's answer, name the controller so that a wrong address is obvious.
func (o *options) fromRPC(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	var prefix string
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		prefix = "controller " + o.controller + ": "
	case codes.Unauthenticated:
		prefix = "controller " + o.controller + " did not accept the certificate " + o.cert + ": "
	case codes.ResourceExhausted:
		// Over MaxMessageBytes, here or at the controller: say which limit and what to do.
		prefix = fmt.Sprintf("message over the %d MiB limit of lvsctl and the controller (ask for less: one cluster by name, or apply in several files): ", MaxMessageBytes>>20)
	}
	return &rpcError{prefix: prefix, st: st}
}

func outputFormat(cmd *cobra.Command) (printer.Format, error) {
	s, err := cmd.Flags().GetString("output")
	if err != nil {
		return "", err
	}
	return printer.ParseFormat(s)
}

func printFormat(cmd *cobra.Command) (printer.Printer, error) {
	f, err := outputFormat(cmd)
	if err != nil {
		return nil, err
	}
	return printer.New(f)
}

func addOutputFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().StringP("output", "o", string(printer.Table), "output format: table, yaml or json")
}
