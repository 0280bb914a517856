package tempo

import (
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/rlp"
)

// This file holds the strict RLP reading helpers of the 0x76 codec. They sit on
// go-ethereum's rlp.Split, which already refuses non-canonical length prefixes
// and items that overrun their input, and add what Split leaves to the caller:
// canonical integers, fixed-width byte strings, exact item counts, and error
// messages that name the field and say what was expected.

// rlpItem is one item of an RLP list.
type rlpItem struct {
	kind    rlp.Kind
	content []byte // payload without the header (for rlp.Byte: the byte itself)
	enc     []byte // the complete encoding, header included
}

// isList reports whether the item is an RLP list.
func (it rlpItem) isList() bool { return it.kind == rlp.List }

// isEmptyString reports whether the item is the empty byte string 0x80.
func (it rlpItem) isEmptyString() bool { return it.kind == rlp.String && len(it.content) == 0 }

// describeRLPError turns an error of rlp.Split on input b into a sentence a
// wallet author can act on. The rlp package reports several distinct defects as
// one ErrCanonSize, so the header byte is inspected to say which one it was.
func describeRLPError(b []byte, err error) string {
	switch {
	case errors.Is(err, rlp.ErrCanonSize) && len(b) > 0:
		h := b[0]
		switch {
		case h == 0x81 && len(b) > 1:
			return fmt.Sprintf("non-canonical RLP: single byte 0x%02x below 0x80 must be encoded as itself, not as 0x81 0x%02x", b[1], b[1])
		case (h >= 0xb8 && h <= 0xbf) || h >= 0xf8:
			if len(b) > 1 && b[1] == 0 {
				return fmt.Sprintf("non-canonical RLP: length prefix (header 0x%02x) has a leading zero byte", h)
			}
			return fmt.Sprintf("non-canonical RLP: long-form length prefix (header 0x%02x) used for an item shorter than 56 bytes; the short form is required", h)
		}
		return "non-canonical RLP length prefix"
	case errors.Is(err, rlp.ErrValueTooLarge):
		return fmt.Sprintf("RLP item (header 0x%02x) declares more bytes than remain (%d including the header): input truncated or the length overruns the enclosing list", b[0], len(b))
	case errors.Is(err, io.ErrUnexpectedEOF):
		if len(b) == 0 {
			return "unexpected end of input: item missing"
		}
		return fmt.Sprintf("unexpected end of input inside the length prefix of header 0x%02x", b[0])
	default:
		return err.Error()
	}
}

// splitItem reads one item from the front of b.
func splitItem(field string, b []byte) (rlpItem, []byte, error) {
	k, content, rest, err := rlp.Split(b)
	if err != nil {
		return rlpItem{}, nil, malformedf("%s: %s", field, describeRLPError(b, err))
	}
	return rlpItem{kind: k, content: content, enc: b[:len(b)-len(rest)]}, rest, nil
}

// listItems splits the payload of a list item into its elements; an element
// that cannot be read is reported as field[i].
func listItems(field string, it rlpItem) ([]rlpItem, error) {
	return namedListItems(field, it, func(i int) string { return fmt.Sprintf("%s[%d]", field, i) })
}

// namedListItems is listItems with the element names given by name, for lists
// whose positions are fields (name(i) is the field at position i).
func namedListItems(field string, it rlpItem, name func(i int) string) ([]rlpItem, error) {
	if !it.isList() {
		return nil, malformedf("%s: expected an RLP list, got a byte string", field)
	}
	var items []rlpItem
	for b := it.content; len(b) > 0; {
		var (
			elem rlpItem
			err  error
		)
		elem, b, err = splitItem(name(len(items)), b)
		if err != nil {
			return nil, err
		}
		items = append(items, elem)
	}
	return items, nil
}

// listOfN splits a list that must have exactly n elements, named by names
// (field.name) when given.
func listOfN(field string, it rlpItem, n int, shape string, names ...string) ([]rlpItem, error) {
	items, err := namedListItems(field, it, func(i int) string {
		if i < len(names) {
			return field + "." + names[i]
		}
		return fmt.Sprintf("%s[%d]", field, i)
	})
	if err != nil {
		return nil, err
	}
	if len(items) != n {
		return nil, malformedf("%s: expected a list of %d items %s, got %d items", field, n, shape, len(items))
	}
	return items, nil
}

// byteString returns the content of a byte-string item.
func byteString(field string, it rlpItem) ([]byte, error) {
	if it.isList() {
		return nil, malformedf("%s: expected a byte string, got an RLP list", field)
	}
	return it.content, nil
}

// uintBytes returns the big-endian magnitude of a canonical RLP integer of at
// most maxBytes bytes. Canonical means: zero is the empty string 0x80 and a
// nonzero value has no leading zero byte.
func uintBytes(field string, it rlpItem, maxBytes int, typ string) ([]byte, error) {
	if it.isList() {
		return nil, malformedf("%s: expected an integer (byte string), got an RLP list", field)
	}
	c := it.content
	if len(c) > 0 && c[0] == 0 {
		if len(c) == 1 {
			return nil, malformedf("%s: non-canonical integer: zero must be encoded as the empty string 0x80, got 0x00", field)
		}
		return nil, malformedf("%s: non-canonical integer (leading zero byte)", field)
	}
	if len(c) > maxBytes {
		return nil, malformedf("%s: integer is %d bytes, exceeds the %d-byte maximum of a %s", field, len(c), maxBytes, typ)
	}
	return c, nil
}

// readUint64 reads a canonical u64.
func readUint64(field string, it rlpItem) (uint64, error) {
	c, err := uintBytes(field, it, 8, "u64")
	if err != nil {
		return 0, err
	}
	var x uint64
	for _, b := range c {
		x = x<<8 | uint64(b)
	}
	return x, nil
}

// readBig reads a canonical unsigned integer of at most maxBytes bytes.
func readBig(field string, it rlpItem, maxBytes int, typ string) (*big.Int, error) {
	c, err := uintBytes(field, it, maxBytes, typ)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(c), nil
}

// readWord reads a canonical U256 into a 32-byte big-endian word.
func readWord(field string, it rlpItem) ([32]byte, error) {
	var w [32]byte
	c, err := uintBytes(field, it, 32, "U256")
	if err != nil {
		return w, err
	}
	copy(w[32-len(c):], c)
	return w, nil
}

// readOptAddress reads an address that may be absent (the empty string 0x80).
func readOptAddress(field string, it rlpItem, absent string) (*common.Address, error) {
	c, err := byteString(field, it)
	if err != nil {
		return nil, err
	}
	switch len(c) {
	case 0:
		return nil, nil
	case common.AddressLength:
		a := common.BytesToAddress(c)
		return &a, nil
	}
	return nil, malformedf("%s: expected %s (0x80) or a 20-byte address, got %d bytes", field, absent, len(c))
}

// readFixed reads a byte string of exactly n bytes.
func readFixed(field string, it rlpItem, n int) ([]byte, error) {
	c, err := byteString(field, it)
	if err != nil {
		return nil, err
	}
	if len(c) != n {
		return nil, malformedf("%s: expected exactly %d bytes, got %d", field, n, len(c))
	}
	return c, nil
}
