package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// readManifest reads, parses and checks a manifest; "-" is standard input. The check is the
// controller's own per-object validation, so mistakes show before anything is sent. It reads
// at most limits.MaxManifestBytes (and one byte more, to tell that the input is larger).
func (o *options) readManifest(file string) ([]*lvsctlv1.Object, error) {
	in := o.streams.In
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading manifest: %w", err)
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, limits.MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if len(data) > limits.MaxManifestBytes {
		return nil, &manifest.InputError{Err: fmt.Errorf("%s: more than %d bytes, the limit of a manifest (apply it in parts): %w", file, limits.MaxManifestBytes, limits.ErrExceeded)}
	}
	objs, err := manifest.Parse(data)
	if err != nil {
		return nil, err
	}
	// The first limits.MaxErrors problems are listed, as the controller would.
	var errs []error
	more := 0
	for _, obj := range objs {
		err := validate.Object(obj)
		if err == nil {
			continue
		}
		if len(errs) >= limits.MaxErrors {
			more++
			continue
		}
		errs = append(errs, err)
	}
	if more > 0 {
		errs = append(errs, fmt.Errorf("and %d more objects with problems", more))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return objs, nil
}

// kindWord is the kubectl-like prefix of an object: cluster/wms, group/edge-1.
func kindWord(k lvsctlv1.Kind) string {
	switch k {
	case lvsctlv1.Kind_KIND_CLUSTER:
		return validate.KindCluster
	case lvsctlv1.Kind_KIND_GROUP:
		return validate.KindGroup
	}
	return "object"
}

func objectKind(o *lvsctlv1.Object) lvsctlv1.Kind {
	switch o.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		return lvsctlv1.Kind_KIND_CLUSTER
	case *lvsctlv1.Object_Group:
		return lvsctlv1.Kind_KIND_GROUP
	}
	return lvsctlv1.Kind_KIND_UNSPECIFIED
}

func objectRevision(o *lvsctlv1.Object) int64 {
	if c := o.GetCluster(); c != nil {
		return c.GetRevision()
	}
	return o.GetGroup().GetRevision()
}

type objectKey struct {
	kind lvsctlv1.Kind
	name string
}

func keyOf(o *lvsctlv1.Object) objectKey {
	_, name := validate.KindName(o)
	return objectKey{objectKind(o), name}
}

func actionWord(a lvsctlv1.Action) string {
	switch a {
	case lvsctlv1.Action_ACTION_CREATED:
		return "created"
	case lvsctlv1.Action_ACTION_UPDATED:
		return "configured"
	case lvsctlv1.Action_ACTION_UNCHANGED:
		return "unchanged"
	case lvsctlv1.Action_ACTION_DELETED:
		return "deleted"
	}
	return "?"
}

// applyFile sends a manifest file as one Apply (a dry run for diff), after checking it locally.
func (o *options) applyFile(ctx context.Context, file string, dryRun, adopt bool) (*lvsctlv1.ApplyResponse, error) {
	objs, err := o.readManifest(file)
	if err != nil {
		return nil, err
	}
	conn, err := o.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := o.context(ctx)
	defer cancel()
	resp, err := lvsctlv1.NewConfigServiceClient(conn).Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs, DryRun: dryRun, Adopt: adopt})
	if err != nil {
		return nil, o.fromRPC(err)
	}
	return resp, nil
}

func newApplyCmd(o *options) *cobra.Command {
	var file string
	var adopt bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE [--adopt]",
		Short: "Create or update clusters and director groups from a manifest, in one atomic write",
		Long: "apply writes the manifest's objects in one atomic write; every director of their groups\n" +
			"then makes its kernel match.\n\n" +
			"--adopt moves a site in without a dropped connection: a director whose kernel already has a\n" +
			"cluster's IPVS service exactly as the manifest describes it (from lvsctl import, with its\n" +
			"fwmark pinned) takes that service and its VIPs over as they are, with no kernel operation;\n" +
			"a service that differs is refused, naming the difference, and left alone.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := o.applyFile(cmd.Context(), file, false, adopt)
			if err != nil {
				return err
			}
			revisions := map[objectKey]int64{}
			for _, obj := range resp.GetObjects() {
				revisions[keyOf(obj)] = objectRevision(obj)
			}
			for _, r := range resp.GetResults() {
				rev, ok := revisions[objectKey{r.GetKind(), r.GetName()}]
				if !ok {
					rev = resp.GetRevision()
				}
				fmt.Fprintf(o.streams.Out, "%s/%s %s (revision %d)\n", kindWord(r.GetKind()), r.GetName(), actionWord(r.GetAction()), rev)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest to apply (YAML or JSON; - for standard input)")
	cmd.Flags().BoolVar(&adopt, "adopt", false, "take over kernel services that match the manifest exactly, in place (a migration)")
	_ = cmd.MarkFlagRequired("filename") // fails only for a flag that does not exist
	return cmd
}

func newDiffCmd(o *options) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "diff -f FILE",
		Short: "Show what apply would change, per object and per director group; exit 1 if anything would",
		Long: "diff sends the manifest as a dry-run apply and prints each object's field changes and\n" +
			"the plan of each director group (what all of its directors would change).\n" +
			"Exit status: 0 no differences, 1 differences, 2 error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := o.applyFile(cmd.Context(), file, true, false)
			if err != nil {
				return err
			}
			differs := false
			for _, r := range resp.GetResults() {
				if r.GetAction() == lvsctlv1.Action_ACTION_UNCHANGED {
					continue
				}
				differs = true
				fmt.Fprintf(o.streams.Out, "%s/%s would be %s\n", kindWord(r.GetKind()), r.GetName(), actionWord(r.GetAction()))
				for _, c := range r.GetChanges() {
					fmt.Fprintf(o.streams.Out, "  %s\n", c)
				}
			}
			for _, p := range resp.GetPlans() {
				if len(p.GetChanges()) == 0 {
					continue
				}
				differs = true
				fmt.Fprintf(o.streams.Out, "group %s (directors %s) would:\n", p.GetGroup(), strings.Join(p.GetDirectors(), ", "))
				for _, c := range p.GetChanges() {
					fmt.Fprintf(o.streams.Out, "  %s\n", c)
				}
			}
			if differs {
				return errDifferences
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest to compare (YAML or JSON; - for standard input)")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}
