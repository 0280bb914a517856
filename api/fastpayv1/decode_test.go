package fastpayv1

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// TestCountFieldsCappedBySize: the decoders size their slices from a
// count of the frame's fields, and a frame of empty objects must not
// reserve room for more objects than its bytes could carry.
func TestCountFieldsCappedBySize(t *testing.T) {
	var empty []byte
	for range 4096 {
		empty = protowire.AppendBytes(protowire.AppendTag(empty, fieldBulletinCerts, protowire.BytesType), nil)
	}
	cases := []struct {
		name  string
		data  []byte
		limit int
		want  [5]int
	}{
		{"4,096 empty certificates", empty, 4096, [5]int{fieldBulletinCerts: len(empty) / 64}},
		{"under a lower limit", empty, 10, [5]int{fieldBulletinCerts: 10}},
		{"nothing", nil, 4096, [5]int{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := countFields(tc.data, tc.limit); got != tc.want {
				t.Fatalf("counts %v, want %v", got, tc.want)
			}
		})
	}
	d, err := DecodeBulletinFrame(empty, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if d.Objects != 4096 || d.Invalid == nil || len(d.Certs) != 0 || cap(d.Certs) > len(empty)/64 {
		t.Fatalf("objects %d, invalid %v, certs %d (capacity %d)", d.Objects, d.Invalid, len(d.Certs), cap(d.Certs))
	}
}
