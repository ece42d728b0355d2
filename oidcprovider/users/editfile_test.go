package users

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestEditFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yml")
	digest := cheapDigest(t, "pw")
	add := func(name string) func([]byte) ([]byte, error) {
		return func(data []byte) ([]byte, error) { return AddUser(data, NewUser{Name: name, Digest: digest}) }
	}
	// a missing file is created only when asked, with mode 0600
	if _, err := EditFile(path, false, add("a")); err == nil {
		t.Fatal("a missing file was edited without create")
	}
	if changed, err := EditFile(path, true, add("a")); err != nil || !changed {
		t.Fatalf("creating: %v %v", changed, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("a new file has mode %v, want 0600", fi.Mode().Perm())
	}
	// an existing file keeps its mode
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := EditFile(path, false, add("b")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o640 {
		t.Errorf("the edited file has mode %v, want 0640 as before", fi.Mode().Perm())
	}
	f, err := Open(path)
	if err != nil || f.Current().Len() != 2 {
		t.Fatalf("the file after two additions: %v", err)
	}
	// nothing to change: nothing written
	before, _ := os.ReadFile(path)
	if changed, err := EditFile(path, false, func(d []byte) ([]byte, error) { return SetDisabled(d, "a", false) }); err != nil || changed {
		t.Errorf("a no-op edit: %v %v", changed, err)
	}
	// a result Parse refuses is not written
	if _, err := EditFile(path, false, func(d []byte) ([]byte, error) { return append(d, "  c:\n    password: x\n"...), nil }); err == nil {
		t.Error("a bad result was written")
	}
	// a file changed by someone else meanwhile is left to them
	_, err = EditFile(path, false, func(d []byte) ([]byte, error) {
		if err := os.WriteFile(path, append(d, "# meanwhile\n"...), 0o600); err != nil {
			t.Fatal(err)
		}
		return AddUser(d, NewUser{Name: "c", Digest: digest})
	})
	if !errors.Is(err, ErrChanged) {
		t.Errorf("a concurrent change: %v, want ErrChanged", err)
	}
	if now, _ := os.ReadFile(path); string(now) != string(before)+"# meanwhile\n" {
		t.Errorf("the concurrent change was overwritten:\n%s", now)
	}
	// a symlink is followed: its target changes, the link stays
	if runtime.GOOS != "windows" {
		link := filepath.Join(dir, "link.yml")
		if err := os.Symlink(path, link); err != nil {
			t.Fatal(err)
		}
		if _, err := EditFile(link, false, add("d")); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Error("the symlink was replaced")
		}
		if f, err := Open(path); err != nil || f.Current().Len() != 3 {
			t.Errorf("the link's target after an addition through it: %v", err)
		}
	}
	// the owner is kept (root can give the replacement to the server's user)
	if uid, _, ok := owner(statOrNil(mustOpen(t, path))); ok && os.Geteuid() == 0 && uid == 0 {
		if err := os.Chown(path, 4242, 4343); err != nil {
			t.Fatal(err)
		}
		if _, err := EditFile(path, false, add("e")); err != nil {
			t.Fatal(err)
		}
		if uid, gid, _ := owner(statOrNil(mustOpen(t, path))); uid != 4242 || gid != 4343 {
			t.Errorf("the edited file belongs to %d:%d, want 4242:4343 as before", uid, gid)
		}
	}
	// no temporary file is left behind
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Edits running at once take turns: every one of them is in the file at the end.
func TestConcurrentEditsAllLand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	digest := cheapDigest(t, "pw")
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = EditFile(path, true, func(data []byte) ([]byte, error) {
				return AddUser(data, NewUser{Name: fmt.Sprintf("user%d", i), Digest: digest})
			})
		}()
	}
	wg.Wait()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		_, in := db.Lookup(fmt.Sprintf("user%d", i))
		if err == nil && !in {
			t.Errorf("user%d: the edit said it was written, but the file lacks it", i)
		}
		if err != nil && !errors.Is(err, ErrChanged) {
			t.Errorf("user%d: %v", i, err)
		}
	}
	if db.Len() != n {
		t.Errorf("%d users in the file after %d edits at once, want all", db.Len(), n)
	}
}

// A dangling symbolic link is refused, not replaced by a file.
func TestEditFileRefusesADanglingLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "users.yml")
	if err := os.Symlink(filepath.Join(dir, "nowhere.yml"), link); err != nil {
		t.Fatal(err)
	}
	_, err := EditFile(link, true, func(data []byte) ([]byte, error) {
		return AddUser(data, NewUser{Name: "x", Digest: cheapDigest(t, "pw")})
	})
	if err == nil {
		t.Fatal("a dangling link was edited")
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi, err)
	}
}
