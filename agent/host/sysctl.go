package host

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// expireQuiescentTemplate is IPVS's sysctl (per network namespace) that makes a persistence
// template whose real server has weight 0 expire when a new connection of its client comes.
// Without it, a drained or quiesced real server keeps every client whose template points at
// it for the whole persistence timeout (600 s for the WMS cluster): weight 0 alone does not
// drain a persistent service (kubernetes#71809). Established connections are not touched.
const expireQuiescentTemplate = "net/ipv4/vs/expire_quiescent_template"

// setExpireQuiescentTemplate sets net.ipv4.vs.expire_quiescent_template to 1 under procSys
// (/proc/sys, which shows the sysctls of the caller's network namespace); changed says whether
// it was not 1 before. The file exists only once IPVS is loaded: without it the error wraps
// fs.ErrNotExist.
func setExpireQuiescentTemplate(procSys string) (changed bool, err error) {
	path := filepath.Join(procSys, expireQuiescentTemplate)
	cur, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if string(bytes.TrimSpace(cur)) == "1" {
		return false, nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

// quiescentTemplates sets the sysctl once IPVS is open, and logs what it did: a failure is
// logged, not fatal (the agent still balances; drains of persistent services are slower).
func quiescentTemplates(log *slog.Logger, procSys string) {
	changed, err := setExpireQuiescentTemplate(procSys)
	switch {
	case err != nil:
		log.Error("cannot set net.ipv4.vs.expire_quiescent_template=1: a drained or down real server keeps its persistent clients until their templates time out", "error", err)
	case changed:
		log.Info("set net.ipv4.vs.expire_quiescent_template=1: persistence templates of real servers at weight 0 expire, so drains and down servers lose their persistent clients' new connections")
	}
}
