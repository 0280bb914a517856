package apiserver

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/allegro-mesh/allegro/qc"
)

// routeBindings serves the sidecar key bindings of a network whose
// committees come from the chain (SPEC §5a): GET lists them, POST hands one
// in, and the sidecar passes it on to its peers.
const routeBindings = "/api/v1/bindings"

// BindingKeeper is implemented by backends of networks whose committees
// come from the chain.
type BindingKeeper interface {
	// TakesBindings reports whether the network's committees come from the
	// chain (otherwise the route is not served).
	TakesBindings() bool
	// Bindings returns the bindings the sidecar holds.
	Bindings() []qc.Binding
	// AddBinding keeps a binding handed in; it reports whether it was new.
	// An error means the binding is refused (its text says why).
	AddBinding(b qc.Binding) (bool, error)
}

// JSONBinding is a sidecar key binding: 32-byte keys and 64-byte
// signatures in 0x hex.
type JSONBinding struct {
	ChainID          U64    `json:"chain_id"`
	ConsensusKey     string `json:"consensus_key"`
	SidecarKey       string `json:"sidecar_key"`
	FirstEpoch       U64    `json:"first_epoch"`
	Signature        string `json:"signature"`
	SidecarSignature string `json:"sidecar_signature"`
}

// NewJSONBinding encodes b.
func NewJSONBinding(b qc.Binding) JSONBinding {
	return JSONBinding{ChainID: U64(b.ChainID), ConsensusKey: Hex0x(b.ConsensusKey[:]), SidecarKey: Hex0x(b.SidecarKey[:]),
		FirstEpoch: U64(b.FirstEpoch), Signature: Hex0x(b.Signature[:]), SidecarSignature: Hex0x(b.SidecarSignature[:])}
}

// ToBinding decodes j, checking lengths only.
func (j JSONBinding) ToBinding() (qc.Binding, error) {
	b := qc.Binding{ChainID: uint64(j.ChainID), FirstEpoch: uint64(j.FirstEpoch)}
	for _, f := range []struct {
		name, text string
		dst        []byte
	}{
		{"consensus_key", j.ConsensusKey, b.ConsensusKey[:]}, {"sidecar_key", j.SidecarKey, b.SidecarKey[:]},
		{"signature", j.Signature, b.Signature[:]}, {"sidecar_signature", j.SidecarSignature, b.SidecarSignature[:]},
	} {
		raw, err := hex.DecodeString(strings.TrimPrefix(f.text, "0x"))
		if err != nil || len(raw) != len(f.dst) {
			return b, fmt.Errorf("%s: want %d bytes in hex", f.name, len(f.dst))
		}
		copy(f.dst, raw)
	}
	return b, nil
}

// BindingsResponse is the body of GET /api/v1/bindings.
type BindingsResponse struct {
	Bindings []JSONBinding `json:"bindings"`
}

// AddBindingResponse is the body of POST /api/v1/bindings.
type AddBindingResponse struct {
	Added bool `json:"added"` // false: the sidecar held it already
}

func (s *Server) handleBindings(w http.ResponseWriter, r *http.Request) {
	bk := s.backend.(BindingKeeper)
	if r.Method != http.MethodPost {
		resp := BindingsResponse{Bindings: []JSONBinding{}}
		for _, b := range bk.Bindings() {
			resp.Bindings = append(resp.Bindings, NewJSONBinding(b))
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "request body too large")
			return
		}
		badRequest(w, "reading the body: "+err.Error())
		return
	}
	var j JSONBinding
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		badRequest(w, "not a JSON binding: "+err.Error())
		return
	}
	b, err := j.ToBinding()
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	added, err := bk.AddBinding(b)
	if err != nil {
		badRequest(w, "binding refused: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, AddBindingResponse{Added: added})
}
