package agent

import (
	"runtime"
	"runtime/debug"
)

// BuildInfo says which build of the agent is running: for steward_build_info,
// and for anything that prints a version.
type BuildInfo struct {
	// Version is the agent's Version (set with -ldflags -X).
	Version string `json:"version"`
	// ModuleVersion is the main module's version as the go command stamped
	// it: a tag for `go install ...@vX`, "(devel)" for a build from source.
	ModuleVersion string `json:"module_version"`
	// Revision is the VCS commit the binary was built from, with "-dirty"
	// when the work tree had changes; "unknown" when the build carried no
	// VCS information (go build -buildvcs=false, or outside a checkout).
	Revision string `json:"revision"`
	// GoVersion is the Go release that built the binary.
	GoVersion string `json:"go_version"`
}

// Build reads the running binary's build information.
func Build() BuildInfo {
	b := BuildInfo{Version: Version, ModuleVersion: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if info.Main.Version != "" {
		b.ModuleVersion = info.Main.Version
	}
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "-dirty"
	}
	return b
}
