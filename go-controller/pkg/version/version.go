// Package version reports which kovn build is running. The values are stamped at link time by the Makefile
// (-ldflags -X); a plain `go build` reports the module version Go recorded, or "dev".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by the linker; read-only at run time.
var (
	version = ""
	commit  = ""
)

// Info describes the running build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the running build's version information.
func Get() Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

func (i Info) String() string {
	s := fmt.Sprintf("%s (%s, %s)", i.Version, i.GoVersion, i.Platform)
	if i.Commit != "" {
		s = fmt.Sprintf("%s commit %s (%s, %s)", i.Version, i.Commit, i.GoVersion, i.Platform)
	}
	return s
}
