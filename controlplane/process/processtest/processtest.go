// Package processtest builds the process driver's fake cell (controlplane/process/testdata/
// fakecell) for the tests of the packages that drive cells: process, supervisor and api.
package processtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildFakeCell compiles the fake cell into a fresh temporary directory and returns the binary's
// path and a cleanup that removes the directory. It returns the compiler's output in the error
// when the build fails. The source is found next to this file, so it works from any package's
// working directory (versitygw's posix backend changes it in some test binaries).
func BuildFakeCell() (bin string, cleanup func(), err error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", nil, fmt.Errorf("processtest: cannot locate own source")
	}
	src := filepath.Join(filepath.Dir(self), "..", "testdata", "fakecell")
	dir, err := os.MkdirTemp("", "atende-fakecell-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "fakecell")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("processtest: build fakecell: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
