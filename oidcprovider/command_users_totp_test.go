package oidcprovider

import (
	"strings"
	"testing"

	"github.com/boombuler/barcode/qr"
)

// readQR reads a picture renderQR drew back into modules (true: a block), quiet zone included.
func readQR(t *testing.T, text string) [][]bool {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	var rows [][]bool
	for _, line := range lines {
		var top, bottom []bool
		for _, r := range line {
			switch r {
			case '█':
				top, bottom = append(top, true), append(bottom, true)
			case '▀':
				top, bottom = append(top, true), append(bottom, false)
			case '▄':
				top, bottom = append(top, false), append(bottom, true)
			case ' ':
				top, bottom = append(top, false), append(bottom, false)
			default:
				t.Fatalf("unexpected character %q in the QR code", r)
			}
		}
		rows = append(rows, top, bottom)
	}
	return rows
}

// The QR code drawn in the terminal is the QR code of the URI, module for module, inside a
// 4-module quiet zone, with the three finder patterns where a reader looks for them; --invert
// swaps blocks and spaces; the same URI always draws the same picture.
func TestRenderQR(t *testing.T) {
	uri := "otpauth://totp/auth.example.com:john?algorithm=SHA1&digits=6&issuer=auth.example.com&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3"
	text, err := renderQR(uri, false)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := renderQR(uri, false)
	if again != text {
		t.Fatal("the same URI drew two pictures")
	}
	want, err := qr.Encode(uri, qr.M, qr.Auto)
	if err != nil {
		t.Fatal(err)
	}
	n := want.Bounds().Dx()
	size := n + 2*qrQuietZone
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != (size+1)/2 {
		t.Fatalf("%d lines, want %d for %d modules and the quiet zone", len(lines), (size+1)/2, n)
	}
	for i, l := range lines {
		if c := len([]rune(l)); c != size {
			t.Fatalf("line %d has %d characters, want %d", i, c, size)
		}
	}
	if size > 80 {
		t.Errorf("the picture is %d columns wide: more than a terminal's 80", size)
	}
	got := readQR(t, text)
	dark := func(x, y int) bool {
		x, y = x-qrQuietZone, y-qrQuietZone
		if x < 0 || y < 0 || x >= n || y >= n {
			return false
		}
		r, _, _, _ := want.At(x, y).RGBA()
		return r < 0x8000
	}
	for y := range size {
		for x := range size {
			if got[y][x] == dark(x, y) { // a block is a light module
				t.Fatalf("module %d,%d differs from the URI's QR code", x-qrQuietZone, y-qrQuietZone)
			}
		}
	}
	// a finder pattern: a dark 7×7 ring, a light ring inside, a dark 3×3 centre
	finder := func(ox, oy int) {
		for y := range 7 {
			for x := range 7 {
				ring := x == 0 || y == 0 || x == 6 || y == 6
				centre := x >= 2 && x <= 4 && y >= 2 && y <= 4
				if got[oy+y][ox+x] != !(ring || centre) {
					t.Fatalf("no finder pattern at %d,%d", ox, oy)
				}
			}
		}
	}
	q := qrQuietZone
	finder(q, q)
	finder(q+n-7, q)
	finder(q, q+n-7)

	inverted, err := renderQR(uri, true)
	if err != nil {
		t.Fatal(err)
	}
	inv := readQR(t, inverted)
	for y := range size {
		for x := range size {
			if inv[y][x] != !got[y][x] {
				t.Fatalf("--invert: module %d,%d is not swapped", x, y)
			}
		}
	}
	if other, _ := renderQR(strings.Replace(uri, "john", "mary", 1), false); other == text {
		t.Fatal("two URIs drew the same picture")
	}
}
