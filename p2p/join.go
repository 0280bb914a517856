package p2p

import (
	"context"
	"errors"
	"fmt"
	"slices"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

type joinedTopic struct {
	info  TopicInfo
	name  string
	topic *pubsub.Topic
	sub   *pubsub.Subscription // nil when joined only to publish
}

// Start creates the gossipsub router, joins and subscribes the topics (all
// of them for a validator, the JoinQCShards shards for a light client),
// starts the pubsub link check and dials bootstrap peers. ctx bounds Start
// only. After a failed Start, call Stop.
func (m *Mesh) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case stateStarted:
		return errors.New("p2p: mesh already started")
	case stateStopped:
		return ErrStopped
	}
	m.state = stateStarted
	opts, err := m.pubsubOptions()
	if err != nil {
		return err
	}
	ps, err := pubsub.NewGossipSub(m.ctx, m.host.h, opts...)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}
	m.ps = ps
	var names []string
	if m.member {
		names = append(names, m.topics.tx, m.topics.bull)
		names = append(names, m.topics.qc...)
	} else {
		for _, s := range m.pendingShards {
			names = append(names, m.topics.qc[s])
		}
	}
	for _, name := range names {
		if err := m.joinLocked(name, true); err != nil {
			return err
		}
	}
	m.pendingShards = nil
	if m.member {
		// Every member accepts certificate frames, whatever its own
		// CertRouting: members of one committee may route differently.
		d := m.committee.Domain()
		m.host.h.SetStreamHandler(CertProtocol(d.ChainID, d.Epoch), m.handleCertStream)
	}
	m.wg.Add(1)
	go m.linkCheckLoop()
	return m.host.Start(ctx)
}

// joinLocked joins a topic (registering its validator and score
// parameters) and, if subscribe, subscribes and starts its delivery
// goroutine. A topic joined only to publish is subscribed on a later call.
func (m *Mesh) joinLocked(name string, subscribe bool) error {
	jt, ok := m.joined[name]
	if !ok {
		info, known := m.topics.lookup(name)
		if !known {
			return fmt.Errorf("p2p: unknown topic %q", name)
		}
		// Inline validation: validators run on the ValidationConcurrency
		// workers and a burst waits in the validate queue; pubsub's async
		// mode drops messages once a topic's concurrency is exhausted.
		if err := m.ps.RegisterTopicValidator(name, m.wrap(info.Kind, m.pipes.pipeline(info.Kind)), pubsub.WithValidatorInline(true)); err != nil {
			return fmt.Errorf("p2p: register validator for %s: %w", name, err)
		}
		topic, err := m.ps.Join(name)
		if err != nil {
			_ = m.ps.UnregisterTopicValidator(name)
			return fmt.Errorf("p2p: join %s: %w", name, err)
		}
		if m.cfg.Scoring.Enabled {
			if err := topic.SetScoreParams(topicScoreParams(m.cfg.Scoring)); err != nil {
				return fmt.Errorf("p2p: score params for %s: %w", name, err)
			}
		}
		jt = &joinedTopic{info: info, name: name, topic: topic}
		m.joined[name] = jt
	}
	if !subscribe || jt.sub != nil {
		return nil
	}
	sub, err := jt.topic.Subscribe(pubsub.WithBufferSize(m.cfg.SubscriptionBufferSize))
	if err != nil {
		return fmt.Errorf("p2p: subscribe %s: %w", name, err)
	}
	jt.sub = sub
	m.wg.Add(1)
	go m.deliverLoop(jt.info, sub)
	return nil
}

// JoinQCShards subscribes a light client to QC shards. Before Start the
// shards are remembered; a validator already joins every shard, so for it
// this only checks the arguments.
func (m *Mesh) JoinQCShards(shards []int) error {
	for _, s := range shards {
		if s < 0 || s >= m.cfg.QCShards {
			return fmt.Errorf("p2p: QC shard %d out of range [0, %d)", s, m.cfg.QCShards)
		}
	}
	if m.member {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case stateNew:
		for _, s := range shards {
			if !slices.Contains(m.pendingShards, s) {
				m.pendingShards = append(m.pendingShards, s)
			}
		}
		return nil
	case stateStopped:
		return ErrStopped
	}
	for _, s := range shards {
		if err := m.joinLocked(m.topics.qc[s], true); err != nil {
			return err
		}
	}
	return nil
}

// Stop unsubscribes, stops pubsub and the delivery goroutines and closes
// the host. ctx bounds the wait for handlers still running.
func (m *Mesh) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.state == stateStopped {
		m.mu.Unlock()
		return nil
	}
	m.state = stateStopped
	for _, jt := range m.joined {
		if jt.sub != nil {
			jt.sub.Cancel()
		}
	}
	m.mu.Unlock()
	m.repairMu.Lock()
	m.stopping = true
	m.repairMu.Unlock()

	m.cancel()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	var waitErr error
	select {
	case <-done:
	case <-ctx.Done():
		waitErr = fmt.Errorf("p2p: stop: handlers still running: %w", ctx.Err())
	}
	return errors.Join(waitErr, m.host.Close())
}
