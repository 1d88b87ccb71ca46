// Package version tells which build of Sluice is running: the release
// version and VCS revision stamped at link time, or else what the Go
// toolchain recorded in the binary.
//
// Release builds stamp both:
//
//	go build -ldflags "-X github.com/sluice-gateway/sluice/internal/version.version=v0.1.0 \
//	  -X github.com/sluice-gateway/sluice/internal/version.revision=$(git rev-parse HEAD)" ./cmd/sluice
package version

import (
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X; empty means "ask debug.ReadBuildInfo".
var (
	version  string
	revision string
)

// Info describes a build.
type Info struct {
	Version   string // release version ("v0.1.0"), the module version, or "devel"
	Revision  string // VCS revision, with "-dirty" when the tree had changes; "unknown" when not recorded
	GoVersion string // the Go toolchain that built the binary
}

// Get returns the running binary's build information. Values stamped with
// -ldflags -X win over what the toolchain recorded.
func Get() Info {
	info := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Revision == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			info.Revision = rev
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String is "sluice VERSION (revision REVISION, GOVERSION)".
func (i Info) String() string {
	return "sluice " + i.Version + " (revision " + i.Revision + ", " + i.GoVersion + ")"
}
