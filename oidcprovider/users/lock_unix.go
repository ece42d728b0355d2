//go:build unix

package users

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive advisory lock on the directory holding target for one edit, so
// two edits running at once (two operators, a script in a loop) take turns instead of one
// renaming over the other's result. The lock goes with the returned function, or the process.
func lockDir(target string) (func(), error) {
	d, err := os.Open(filepath.Dir(target))
	if err != nil {
		return nil, fmt.Errorf("opening the users file's directory to lock it: %w", err)
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("locking the users file's directory: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
		d.Close()
	}, nil
}
