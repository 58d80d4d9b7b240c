// Package pkicli is the `lvs-controller pki` command: init makes a CA and the certificates of
// a controller, its directors and its operators; issue adds or replaces one. It is apart from
// package pki so that the agent, which only loads certificates, does not link cobra.
package pkicli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lvsctl/lvsctl/pki"
)

// Main runs `pki ARGS...` and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := Command()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(stderr, "lvs-controller pki:", err)
		return 1
	}
	return 0
}

// Command is the `pki` command tree.
func Command() *cobra.Command {
	root := &cobra.Command{
		Use:   "pki",
		Short: "make and issue lvsctl's certificates (CA, controller, directors, operators)",
		Long: `lvsctl's components authenticate each other with certificates from one CA.

  pki init DIR                 a new CA with the controller's certificate, and optionally
                               directors' and operators' ones
  pki issue DIR --director N   a director's certificate (DIR/director-N.crt, .key)
  pki issue DIR --user N --role viewer|operator|admin
                               an operator's certificate (DIR/user-N.crt, .key)
  pki issue DIR --controller   a new controller certificate (rotation, new --san)

Running controllers and agents re-read their files within seconds (or on SIGHUP).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.AddCommand(initCmd(), issueCmd())
	return root
}

func initCmd() *cobra.Command {
	var o pki.InitOptions
	var hosts, users, operators []string
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "make a CA, the controller's certificate and optional directors' and operators' ones",
		Long: `init writes DIR/ca.crt, DIR/ca.key (mode 0600), DIR/controller.crt and DIR/controller.key,
and for each --director N: DIR/director-N.crt/.key, for each --user N:ROLE: DIR/user-N.crt/.key.
The controller's certificate is valid for localhost, 127.0.0.1, ::1, this host's name and every
--san. init refuses a DIR that already has a CA: every certificate it signed would stop working.`,
		Example: `  lvs-controller pki init /etc/lvsctl/pki --san ctl.example.net --san 198.51.100.1 \
      --director dir-a,dir-b --user alice:admin --user bob:viewer`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SANs = append(o.SANs, splitList(hosts)...)
			o.Directors = splitList(o.Directors)
			for _, u := range append(splitList(users), splitList(operators)...) {
				parsed, err := pki.ParseUser(u)
				if err != nil {
					return fmt.Errorf("--user: %w", err)
				}
				o.Users = append(o.Users, parsed)
			}
			written, err := pki.Init(args[0], o)
			report(cmd.OutOrStdout(), written)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), `
Next: the controller  lvs-controller --tls-dir %[1]s ...
      an agent        lvs-agent --director NAME --ca %[1]s/ca.crt --cert %[1]s/director-NAME.crt --key %[1]s/director-NAME.key ...
      lvsctl          lvsctl --ca %[1]s/ca.crt --cert %[1]s/user-NAME.crt --key %[1]s/user-NAME.key ...
Keep %[1]s/ca.key on the controller only (or offline): whoever holds it can make any identity.
`, args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.SANs, "san", nil, "an extra DNS name or IP address of the controller (repeatable; loopback and the host name are always in)")
	f.StringSliceVar(&hosts, "controller-host", nil, "extra controller names or addresses, comma-separated (same as --san)")
	f.StringSliceVar(&o.Directors, "director", nil, "a director to issue a certificate for (repeatable or comma-separated)")
	f.StringSliceVar(&users, "user", nil, "an operator NAME:ROLE to issue a certificate for, ROLE one of viewer, operator, admin (repeatable or comma-separated)")
	f.StringSliceVar(&operators, "operator", nil, "same as --user")
	f.IntVar(&o.Days, "days", pki.DefaultDays, "validity of every certificate but the CA's (10 years), in days")
	return cmd
}

func issueCmd() *cobra.Command {
	var director, user, role string
	var controller, force bool
	var sans []string
	var days int
	cmd := &cobra.Command{
		Use:   "issue DIR (--director NAME | --user NAME --role ROLE | --controller)",
		Short: "issue one certificate with the CA in DIR",
		Long: `issue signs a new certificate with DIR/ca.key:
  --director NAME             DIR/director-NAME.crt/.key (CN=NAME, OU=director)
  --user NAME --role ROLE     DIR/user-NAME.crt/.key (CN=NAME, OU=ROLE: viewer, operator or admin)
  --controller [--san H]...   DIR/controller.crt/.key
An existing certificate is replaced only with --force (rotation: controllers and agents re-read
their files within seconds, or on SIGHUP, without a restart).`,
		Example: `  lvs-controller pki issue /etc/lvsctl/pki --director dir-c
  lvs-controller pki issue /etc/lvsctl/pki --user carol --role operator
  lvs-controller pki issue /etc/lvsctl/pki --director dir-a --force    # rotate`,
		Args: cobra.RangeArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			// Also `issue director NAME DIR` and `issue operator NAME --role R DIR`.
			if len(args) == 3 {
				if director != "" || user != "" || controller {
					return errors.New("give the kind either as `issue DIR --director NAME` or as `issue director NAME DIR`, not both")
				}
				switch args[0] {
				case "director":
					director = args[1]
				case "operator", "user":
					user = args[1]
				default:
					return fmt.Errorf("issue %q: the kind is director or operator (or use `issue DIR --director NAME` / `--user NAME --role ROLE`)", args[0])
				}
				dir = args[2]
			} else if len(args) != 1 {
				return errors.New("want `issue DIR --director NAME`, `issue DIR --user NAME --role ROLE` or `issue DIR --controller`")
			}
			kinds := 0
			for _, set := range []bool{director != "", user != "", controller} {
				if set {
					kinds++
				}
			}
			if kinds != 1 {
				return errors.New("give exactly one of --director NAME, --user NAME (with --role) or --controller")
			}
			if role != "" && user == "" {
				return errors.New("--role goes with --user")
			}
			var written []string
			var err error
			switch {
			case director != "":
				written, err = pki.IssueDirector(dir, director, days, force)
			case user != "":
				if role == "" {
					return fmt.Errorf("--role is required with --user (one of %s)", strings.Join(pki.Roles, ", "))
				}
				written, err = pki.IssueUser(dir, user, role, days, force)
			default:
				written, err = pki.IssueController(dir, sans, days, force)
			}
			report(cmd.OutOrStdout(), written)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&director, "director", "", "issue the certificate of this director")
	f.StringVar(&user, "user", "", "issue the certificate of this operator (with --role)")
	f.StringVar(&role, "role", "", "the operator's role: viewer, operator or admin")
	f.BoolVar(&controller, "controller", false, "issue the controller's certificate")
	f.StringArrayVar(&sans, "san", nil, "with --controller: an extra DNS name or IP address (repeatable)")
	f.IntVar(&days, "days", pki.DefaultDays, "validity in days")
	f.BoolVar(&force, "force", false, "replace an existing certificate (rotation)")
	return cmd
}

func report(w io.Writer, files []string) {
	for _, f := range files {
		fmt.Fprintln(w, "wrote", f)
	}
}

// splitList accepts both repeated flags and comma-separated values, without empty items.
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
