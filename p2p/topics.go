package p2p

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/allegro-mesh/allegro/qc"
)

// TopicKind names the three kinds of mesh topic.
type TopicKind uint8

// Topic kinds (SPEC §5). The zero value is not a kind, so an unset field is
// caught.
const (
	// KindTx carries TxFrame: requests a validator accepted. Validators
	// only.
	KindTx TopicKind = iota + 1
	// KindBulletin carries BulletinFrame: a validator's own certificates,
	// QCs and forwarded equivocation pairs. Validators only.
	KindBulletin
	// KindQC carries QCFrame, sharded by recipient. Open to anyone (light
	// clients).
	KindQC
)

// String returns the kind's name as used in topic names and metric labels.
func (k TopicKind) String() string {
	switch k {
	case KindTx:
		return "tx"
	case KindBulletin:
		return "bulletin"
	case KindQC:
		return "qc"
	}
	return "unknown"
}

// ValidatorsOnly reports whether topics of this kind are closed to peers
// outside the committee.
func (k TopicKind) ValidatorsOnly() bool { return k == KindTx || k == KindBulletin }

// MaxMessageSize is the largest payload accepted on topics of this kind;
// larger frames are rejected before decoding.
func (k TopicKind) MaxMessageSize() int { return MaxFrameSize }

// TopicVersion is the last component of every topic name; it changes when
// a topic's payload changes incompatibly. Version 2 carries frames (SPEC §5
// revision 2); a node of version 1 and one of version 2 do not share
// topics, so they ignore each other rather than misread each other.
const TopicVersion = 2

// TxTopic returns /allegro/<chain_id>/<epoch>/tx/2.
func TxTopic(chainID, epoch uint64) string {
	return fmt.Sprintf("/allegro/%d/%d/tx/%d", chainID, epoch, TopicVersion)
}

// BulletinTopic returns /allegro/<chain_id>/<epoch>/bulletin/2.
func BulletinTopic(chainID, epoch uint64) string {
	return fmt.Sprintf("/allegro/%d/%d/bulletin/%d", chainID, epoch, TopicVersion)
}

// QCTopic returns /allegro/<chain_id>/<epoch>/qc/<shard>/2.
func QCTopic(chainID, epoch uint64, shard int) string {
	return fmt.Sprintf("/allegro/%d/%d/qc/%d/%d", chainID, epoch, shard, TopicVersion)
}

// QCShard returns the QC shard of a recipient address: its first byte
// modulo shards. It returns 0 when shards < 1.
func QCShard(recipient [20]byte, shards int) int {
	if shards < 1 {
		return 0
	}
	return int(recipient[0]) % shards
}

// TopicInfo is a parsed topic name.
type TopicInfo struct {
	Kind    TopicKind
	ChainID uint64
	Epoch   uint64
	// Shard is the QC shard; 0 for other kinds.
	Shard int
}

// Name returns the topic name of t.
func (t TopicInfo) Name() string {
	switch t.Kind {
	case KindTx:
		return TxTopic(t.ChainID, t.Epoch)
	case KindBulletin:
		return BulletinTopic(t.ChainID, t.Epoch)
	case KindQC:
		return QCTopic(t.ChainID, t.Epoch, t.Shard)
	}
	return ""
}

// ParseTopic parses a mesh topic name. It accepts exactly the names the
// builders above produce (canonical decimal numbers, TopicVersion).
func ParseTopic(name string) (TopicInfo, error) {
	var t TopicInfo
	parts := strings.Split(name, "/")
	// "", "allegro", chain, epoch, kind, [shard,] version
	if len(parts) < 6 || parts[0] != "" || parts[1] != "allegro" {
		return t, fmt.Errorf("topic %q: not an allegro topic", name)
	}
	var err error
	if t.ChainID, err = parseCanonicalUint(parts[2]); err != nil {
		return t, fmt.Errorf("topic %q: chain id: %w", name, err)
	}
	if t.Epoch, err = parseCanonicalUint(parts[3]); err != nil {
		return t, fmt.Errorf("topic %q: epoch: %w", name, err)
	}
	rest := parts[5:]
	switch parts[4] {
	case "tx":
		t.Kind = KindTx
	case "bulletin":
		t.Kind = KindBulletin
	case "qc":
		t.Kind = KindQC
		if len(rest) != 2 {
			return t, fmt.Errorf("topic %q: qc topic needs a shard", name)
		}
		shard, err := parseCanonicalUint(rest[0])
		if err != nil || shard > 255 {
			return t, fmt.Errorf("topic %q: bad shard %q", name, rest[0])
		}
		t.Shard = int(shard)
		rest = rest[1:]
	default:
		return t, fmt.Errorf("topic %q: unknown kind %q", name, parts[4])
	}
	if len(rest) != 1 || rest[0] != strconv.Itoa(TopicVersion) {
		return t, fmt.Errorf("topic %q: unsupported version or trailing components", name)
	}
	return t, nil
}

func parseCanonicalUint(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if strconv.FormatUint(v, 10) != s {
		return 0, fmt.Errorf("%q is not canonical", s)
	}
	return v, nil
}

// topicSet holds the topics of one committee (chain id and epoch). It is
// built once and read-only afterwards, so the pubsub event loop (message
// ids, peer and subscription filters) looks topics up without locks.
type topicSet struct {
	domain qc.Domain
	shards int
	tx     string
	bull   string
	qc     []string
	byName map[string]TopicInfo
}

func newTopicSet(d qc.Domain, shards int) *topicSet {
	s := &topicSet{
		domain: d,
		shards: shards,
		tx:     TxTopic(d.ChainID, d.Epoch),
		bull:   BulletinTopic(d.ChainID, d.Epoch),
		qc:     make([]string, shards),
		byName: make(map[string]TopicInfo, shards+2),
	}
	s.byName[s.tx] = TopicInfo{Kind: KindTx, ChainID: d.ChainID, Epoch: d.Epoch}
	s.byName[s.bull] = TopicInfo{Kind: KindBulletin, ChainID: d.ChainID, Epoch: d.Epoch}
	for i := range shards {
		s.qc[i] = QCTopic(d.ChainID, d.Epoch, i)
		s.byName[s.qc[i]] = TopicInfo{Kind: KindQC, ChainID: d.ChainID, Epoch: d.Epoch, Shard: i}
	}
	return s
}

// lookup returns the info of one of this committee's topics.
func (s *topicSet) lookup(name string) (TopicInfo, bool) {
	t, ok := s.byName[name]
	return t, ok
}

// qcTopicFor returns the shard topic of a recipient.
func (s *topicSet) qcTopicFor(recipient qc.Address) string {
	return s.qc[QCShard(recipient, s.shards)]
}
