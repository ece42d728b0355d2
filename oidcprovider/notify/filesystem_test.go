package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func newFileNotifier(t *testing.T) (Notifier, string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notification.txt")
	n, err := New(Config{FileSystem: &FileSystemConfig{Filename: name}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return n, name
}

func TestFileSystemAppendsInOrder(t *testing.T) {
	n, name := newFileNotifier(t)
	ctx := context.Background()
	if err := n.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatalf("Check did not create the file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", fi.Mode().Perm())
	}
	to := Recipient{Name: "Jane Doe", Address: "jane@example.com"}
	when := time.Date(2026, 12, 2, 17, 0, 0, 0, time.UTC)
	if err := n.Send(ctx, to, Message{Kind: KindCode, Title: "Confirm it is you", Code: "K7P2-9XQ4", Lifespan: 5 * time.Minute, RemoteIP: "203.0.113.7", When: when}); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(ctx, to, Message{Kind: KindResetLink, Link: "https://auth.example.com/reset?t=abc123", Lifespan: time.Hour + 30*time.Minute, When: when}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	entries := strings.Split(text, Separator+"\n")
	if len(entries) != 3 || entries[0] != "" {
		t.Fatalf("want two entries after separators, got %d:\n%s", len(entries)-1, text)
	}
	first, second := entries[1], entries[2]
	for _, want := range []string{
		"To: Jane Doe <jane@example.com>\n",
		"Subject: Confirm it is you\n",
		"Code: K7P2-9XQ4\n",
		"Hello Jane Doe,",
		"    K7P2-9XQ4\n",
		"valid for 5 minutes",
		"from 203.0.113.7 on Wed, 2 Dec 2026 17:00 UTC",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first entry lacks %q:\n%s", want, first)
		}
	}
	if !strings.HasPrefix(first, "Date: ") {
		t.Errorf("first entry does not begin with its date:\n%s", first)
	}
	for _, want := range []string{
		"Subject: Set a new password\n",
		"Link: https://auth.example.com/reset?t=abc123\n",
		"    https://auth.example.com/reset?t=abc123\n",
		"valid for 1 hour 30 minutes",
	} {
		if !strings.Contains(second, want) {
			t.Errorf("second entry lacks %q:\n%s", want, second)
		}
	}
	if strings.Contains(text, "<html") || strings.Contains(text, "<p") {
		t.Errorf("the file holds HTML:\n%s", text)
	}
	fi, err = os.Stat(name)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode after sending: %v %v", fi.Mode().Perm(), err)
	}
}

func TestFileSystemConcurrentEntriesStayWhole(t *testing.T) {
	n, name := newFileNotifier(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := Message{Kind: KindEvent, Event: fmt.Sprintf("Event number %d happened.", i)}
			if err := n.Send(context.Background(), Recipient{Address: fmt.Sprintf("u%d@example.com", i)}, msg); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	entries := strings.Split(string(b), Separator+"\n")[1:]
	if len(entries) != 20 {
		t.Fatalf("%d entries, want 20", len(entries))
	}
	for _, e := range entries {
		var i int
		if _, err := fmt.Sscanf(e[strings.Index(e, "To: ")+4:], "u%d@", &i); err != nil {
			t.Fatalf("entry without a recipient: %q", e)
		}
		if !strings.Contains(e, fmt.Sprintf("Event number %d happened.", i)) || strings.Count(e, "To: ") != 1 {
			t.Fatalf("entry for u%d is mixed with another:\n%s", i, e)
		}
	}
}

func TestFileSystemNewChecksDirectory(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope", "notification.txt")
	_, err := New(Config{FileSystem: &FileSystemConfig{Filename: missing}}, nil)
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), filepath.Dir(missing)) {
		t.Fatalf("New with a missing directory: %v", err)
	}
}

func TestFileSystemUnwritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "notification.txt")
	n, err := New(Config{FileSystem: &FileSystemConfig{Filename: name}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if err := n.Check(context.Background()); !errors.Is(err, ErrUndeliverable) {
		t.Fatalf("Check on an unwritable directory: %v", err)
	}
	if err := n.Send(context.Background(), Recipient{Address: "a@example.com"}, Message{Kind: KindEvent, Event: "x"}); !errors.Is(err, ErrUndeliverable) {
		t.Fatalf("Send on an unwritable directory: %v", err)
	}
}

// TestFileSystemNoInjection: a name or title with line breaks cannot add a line of its own.
func TestFileSystemNoInjection(t *testing.T) {
	n, name := newFileNotifier(t)
	to := Recipient{Name: "Eve\r\nSubject: forged\nCode: 000000", Address: "eve@example.com"}
	msg := Message{Kind: KindCode, Title: "Hi\r\nCode: 111111", Code: "REAL-CODE", Lifespan: time.Minute}
	if err := n.Send(context.Background(), to, msg); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(name)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Subject: forged") || strings.HasPrefix(line, "Code: 000000") || strings.HasPrefix(line, "Code: 111111") {
			t.Fatalf("injected line %q:\n%s", line, b)
		}
	}
	if !strings.Contains(string(b), "\nCode: REAL-CODE\n") {
		t.Fatalf("the real code line is missing:\n%s", b)
	}
	for _, addr := range []string{"", "eve@example.com\r\nBcc: x@example.com", "Eve <eve@example.com>", "a@example.com, b@example.com", "not an address"} {
		err := n.Send(context.Background(), Recipient{Address: addr}, Message{Kind: KindEvent, Event: "x"})
		if !errors.Is(err, ErrUndeliverable) {
			t.Errorf("address %q: %v, want ErrUndeliverable", addr, err)
		}
	}
}

func TestSendRefusesIncompleteMessages(t *testing.T) {
	n, _ := newFileNotifier(t)
	to := Recipient{Address: "a@example.com"}
	for _, msg := range []Message{
		{Kind: KindCode, Lifespan: time.Minute},
		{Kind: KindCode, Code: "123"},
		{Kind: KindResetLink, Link: "javascript:alert(1)", Lifespan: time.Minute},
		{Kind: KindEvent},
		{Kind: "bogus", Event: "x"},
	} {
		if err := n.Send(context.Background(), to, msg); !errors.Is(err, ErrUndeliverable) {
			t.Errorf("%+v: %v, want ErrUndeliverable", msg, err)
		}
	}
}

// TestNoSecretInLogs: a code or link is never written to the log, even at debug level.
func TestNoSecretInLogs(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	name := filepath.Join(t.TempDir(), "n.txt")
	n, err := New(Config{FileSystem: &FileSystemConfig{Filename: name}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	to := Recipient{Address: "a@example.com"}
	_ = n.Send(context.Background(), to, Message{Kind: KindCode, Code: "SECRET-CODE-1", Lifespan: time.Minute})
	_ = n.Send(context.Background(), to, Message{Kind: KindResetLink, Link: "https://x.example/r?t=SECRET-LINK-2", Lifespan: time.Minute})
	for _, e := range logs.All() {
		s := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(s, "SECRET-") {
			t.Fatalf("a secret in the log: %s", s)
		}
	}
}
