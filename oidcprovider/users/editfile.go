package users

// Replacing the users file on disk: under a lock, with a temporary file renamed over the original
// (its owner and mode kept) once the original is seen unchanged.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
)

// EditFile applies edit to the users file at path and replaces the file with the result
// atomically: a temporary file in the same directory, with the original's permissions, written,
// synced and renamed over it, so a reader (the running server polls the file) sees the old or
// the new file, never a part. A symlink is followed and its target replaced. A missing file is
// edited from EmptyFile when create is true, and created with mode 0600. The result must pass
// Parse, and the file must still hold what was read when the result is renamed over it
// (ErrChanged otherwise). changed is false when edit returned the data unchanged (nothing is
// written).
func EditFile(path string, create bool, edit func(data []byte) ([]byte, error)) (changed bool, err error) {
	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("resolving the users file %s: %w", path, err)
	} else if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return false, fmt.Errorf("the users file %s is a symbolic link to a file that does not exist; create the file it points to, or remove the link", path)
	}
	unlock, err := lockDir(target)
	if err != nil {
		return false, err
	}
	defer unlock()
	mode := fs.FileMode(0o600)
	var fi fs.FileInfo
	existed := true
	data, err := os.ReadFile(target)
	switch {
	case err == nil:
		if fi, err = os.Stat(target); err != nil {
			return false, fmt.Errorf("reading the users file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return false, fmt.Errorf("the users file %s is not a regular file", path)
		}
		mode = fi.Mode().Perm()
	case errors.Is(err, fs.ErrNotExist) && create:
		existed, data = false, []byte(EmptyFile)
	default:
		return false, fmt.Errorf("reading the users file: %w", err)
	}
	out, err := edit(slices.Clone(data))
	if err != nil {
		return false, err
	}
	if existed && bytes.Equal(out, data) {
		return false, nil
	}
	if _, err := Parse(out); err != nil {
		return false, fmt.Errorf("the edited file does not read back, so %s is left as it was: %w", path, err)
	}
	if err := replaceFile(target, fi, mode, out, func() error {
		now, err := os.ReadFile(target)
		switch {
		case existed && err == nil && bytes.Equal(now, data):
			return nil
		case !existed && errors.Is(err, fs.ErrNotExist):
			return nil
		}
		return fmt.Errorf("%s: %w; nothing was written, try again", path, ErrChanged)
	}); err != nil {
		return false, err
	}
	return true, nil
}

// replaceFile writes data to a temporary file beside target, with the owner of old (the
// target's info, nil for a new file) and mode, and renames it over target once unchanged reports
// nil.
func replaceFile(target string, old fs.FileInfo, mode fs.FileMode, data []byte, unchanged func() error) (err error) {
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing the users file: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// keep the owner: a file replaced by root's edit must stay readable by the server's user
	if uid, gid, ok := owner(old); ok {
		if tuid, tgid, ok := owner(statOrNil(tmp)); !ok || tuid != uid || tgid != gid {
			if err := tmp.Chown(uid, gid); err != nil {
				return fmt.Errorf("the users file belongs to uid %d, gid %d, and its replacement cannot (%w); run the command as its owner or as root", uid, gid, err)
			}
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("writing the users file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing the users file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing the users file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the users file: %w", err)
	}
	if err := unchanged(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("replacing the users file: %w", err)
	}
	renamed = true
	// make the rename durable; some systems cannot sync a directory, and the file is in place
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// owner reads a file's uid and gid from its system-specific info, on the systems that have
// them (not Windows).
func owner(fi fs.FileInfo) (uid, gid int, ok bool) {
	if fi == nil {
		return 0, 0, false
	}
	v := reflect.Indirect(reflect.ValueOf(fi.Sys()))
	if v.Kind() != reflect.Struct {
		return 0, 0, false
	}
	u, g := v.FieldByName("Uid"), v.FieldByName("Gid")
	if !u.IsValid() || !g.IsValid() || !u.CanUint() || !g.CanUint() {
		return 0, 0, false
	}
	return int(u.Uint()), int(g.Uint()), true
}

func statOrNil(f *os.File) fs.FileInfo {
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	return fi
}
