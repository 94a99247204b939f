package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// chaos is the run's state the phases share.
type chaos struct {
	o     options
	log   *zap.Logger
	pl    *platform
	admin *jsAdmin
	w     *workload
}

// phaseResult is one phase: the fault began at FaultAt; the phase ends
// after the recovery and the settle time.
type phaseResult struct {
	Name    string
	Fault   string
	Start   time.Time
	FaultAt time.Time
	End     time.Time
	Notes   []string
}

// allFaults is the default order: single faults first, the whole-cluster
// restart and the process kills last.
var allFaults = []string{"baseline", "node-kill", "leader-kill-1", "leader-kill-2", "leader-kill-3", "node-pause", "cluster-restart", "edge-kill", "fanout-kill", "projector-kill"}

var faults = map[string]func(*chaos, context.Context) (phaseResult, error){
	"baseline":        (*chaos).baseline,
	"node-kill":       (*chaos).nodeKill,
	"leader-kill-1":   (*chaos).leaderKill,
	"leader-kill-2":   (*chaos).leaderKill,
	"leader-kill-3":   (*chaos).leaderKill,
	"node-pause":      (*chaos).nodePause,
	"cluster-restart": (*chaos).clusterRestart,
	"edge-kill":       (*chaos).edgeKill,
	"fanout-kill":     (*chaos).fanoutKill,
	"projector-kill":  (*chaos).projectorKill,
}

func (c *chaos) note(ph *phaseResult, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	ph.Notes = append(ph.Notes, s)
	c.log.Info(ph.Name+": "+s, zap.String("phase", ph.Name))
}

// begin opens a phase: a few seconds of steady load, then the fault.
func (c *chaos) begin(ctx context.Context, name, fault string) (phaseResult, error) {
	ph := phaseResult{Name: name, Fault: fault, Start: time.Now()}
	err := sleep(ctx, 3*time.Second)
	ph.FaultAt = time.Now()
	return ph, err
}

// recover waits until every process is ready, every stream replica
// current, and acks flow again; then the settle time.
func (c *chaos) recover(ctx context.Context, ph *phaseResult) error {
	start := time.Now()
	for _, p := range c.pl.all() {
		if err := p.waitReady(ctx, 90*time.Second); err != nil {
			return err
		}
	}
	if err := c.admin.waitCurrent(ctx, 90*time.Second); err != nil {
		c.note(ph, "%v", err)
	} else if strings.HasPrefix(ph.Name, "node-") || strings.HasPrefix(ph.Name, "leader-") || strings.HasPrefix(ph.Name, "cluster-") {
		c.note(ph, "every stream replica current %.1f s after the fault", time.Since(ph.FaultAt).Seconds())
	}
	acked := c.w.acked.Load()
	for deadline := time.Now().Add(60 * time.Second); c.w.acked.Load() < acked+int64(len(c.w.senders)); {
		if time.Now().After(deadline) {
			return fmt.Errorf("no acks for 60 s after the recovery")
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	c.log.Info("recovered", zap.String("phase", ph.Name), zap.Duration("wait", time.Since(start)))
	if err := sleep(ctx, c.o.settle); err != nil {
		return err
	}
	ph.End = time.Now()
	return c.pl.died(nil)
}

func (pl *platform) all() []*proc {
	out := slicesClone(pl.nodes)
	out = append(out, pl.projs...)
	out = append(out, pl.fanouts...)
	out = append(out, pl.presence)
	return append(out, pl.edges...)
}

func (c *chaos) baseline(ctx context.Context) (phaseResult, error) {
	ph := phaseResult{Name: "baseline", Fault: "none: steady load", Start: time.Now()}
	ph.FaultAt = ph.Start
	if err := sleep(ctx, 15*time.Second); err != nil {
		return ph, err
	}
	ph.End = time.Now()
	return ph, nil
}

// nodeByName is the nats node process of a server name.
func (c *chaos) nodeByName(name string) (*proc, error) {
	i := slices.Index(c.pl.nodeName, name)
	if i < 0 {
		return nil, fmt.Errorf("no node named %q", name)
	}
	return c.pl.nodes[i], nil
}

// killNode SIGKILLs p, keeps it down, starts it again.
func (c *chaos) killNode(ctx context.Context, ph *phaseResult, p *proc, down time.Duration) error {
	p.kill()
	c.note(ph, "%s SIGKILLed", p.name)
	if err := sleep(ctx, down); err != nil {
		return err
	}
	t := time.Now()
	if err := c.pl.restart(ctx, p); err != nil {
		return err
	}
	c.note(ph, "%s restarted, ready in %.1f s", p.name, time.Since(t).Seconds())
	return nil
}

func (c *chaos) nodeKill(ctx context.Context) (phaseResult, error) {
	// A node that leads the fewest conversation streams: the plain node case
	// (the leader case is the next phases).
	m, err := c.admin.leaders(ctx)
	if err != nil {
		return phaseResult{}, err
	}
	victim := c.pl.nodes[0]
	fewest := -1
	for i, name := range c.pl.nodeName {
		if fewest < 0 || m[name] < fewest {
			victim, fewest = c.pl.nodes[i], m[name]
		}
	}
	ph, err := c.begin(ctx, "node-kill", fmt.Sprintf("nats node SIGKILLed (leading %d of %d conversation streams), down %v, restarted", fewest, c.pl.partitions, c.o.down))
	if err != nil {
		return ph, err
	}
	if err := c.killNode(ctx, &ph, victim, c.o.down); err != nil {
		return ph, err
	}
	return ph, c.recover(ctx, &ph)
}

// topLeaderNode is the process of the node leading the most conversation
// streams, its name and how many it leads.
func (c *chaos) topLeaderNode(ctx context.Context) (*proc, string, int, error) {
	leader, n, err := c.admin.topLeader(ctx)
	if err != nil {
		return nil, "", 0, err
	}
	p, err := c.nodeByName(leader)
	return p, leader, n, err
}

func (c *chaos) leaderKill(ctx context.Context) (phaseResult, error) {
	p, leader, n, err := c.topLeaderNode(ctx)
	if err != nil {
		return phaseResult{}, err
	}
	ph, err := c.begin(ctx, "leader-kill", fmt.Sprintf("the node leading the most conversation streams (%s, %d of %d) SIGKILLed, down 5 s, restarted", leader, n, c.pl.partitions))
	if err != nil {
		return ph, err
	}
	if err := c.killNode(ctx, &ph, p, 5*time.Second); err != nil {
		return ph, err
	}
	return ph, c.recover(ctx, &ph)
}

func (c *chaos) nodePause(ctx context.Context) (phaseResult, error) {
	p, leader, n, err := c.topLeaderNode(ctx)
	if err != nil {
		return phaseResult{}, err
	}
	ph, err := c.begin(ctx, "node-pause", fmt.Sprintf("the node leading the most conversation streams (%s, %d of %d) SIGSTOPped %v, then SIGCONT", leader, n, c.pl.partitions, c.o.pause))
	if err != nil {
		return ph, err
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return ph, err
	}
	err = sleep(ctx, c.o.pause)
	if cerr := p.signal(syscall.SIGCONT); cerr != nil {
		return ph, cerr
	}
	if err != nil {
		return ph, err
	}
	c.note(&ph, "%s resumed", p.name)
	return ph, c.recover(ctx, &ph)
}

func (c *chaos) clusterRestart(ctx context.Context) (phaseResult, error) {
	ph, err := c.begin(ctx, "cluster-restart", "all three nats nodes stopped (SIGTERM) together, then started together")
	if err != nil {
		return ph, err
	}
	var wg sync.WaitGroup
	for _, p := range c.pl.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(10 * time.Second) }()
	}
	wg.Wait()
	c.note(&ph, "all nodes stopped in %.1f s", time.Since(ph.FaultAt).Seconds())
	t := time.Now()
	for _, p := range c.pl.nodes {
		if err := p.start(); err != nil {
			return ph, err
		}
	}
	for _, p := range c.pl.nodes {
		if err := p.waitReady(ctx, 120*time.Second); err != nil {
			return ph, err
		}
	}
	c.note(&ph, "all nodes ready %.1f s after the start", time.Since(t).Seconds())
	return ph, c.recover(ctx, &ph)
}

func (c *chaos) edgeKill(ctx context.Context) (phaseResult, error) {
	victim := c.pl.edges[0]
	var idle *proc
	if c.o.idle > 0 {
		addr, err := freeAddr()
		if err != nil {
			return phaseResult{}, err
		}
		self, err := executable()
		if err != nil {
			return phaseResult{}, err
		}
		urls := c.pl.edgeURLs(0)
		idle = newProc("idle", self, []string{"idle", "--urls", strings.Join(urls, ","), "--n", strconv.Itoa(c.o.idle), "--src", c.o.idleSrc, "--prefix", c.w.run + "-idle", "--http", addr},
			c.pl.env(), c.pl.dir, c.pl.logDir, addr)
		if err := idle.start(); err != nil {
			return phaseResult{}, err
		}
		defer idle.stop(10 * time.Second)
		t := time.Now()
		if err := idle.waitReady(ctx, 120*time.Second); err != nil {
			return phaseResult{}, fmt.Errorf("idle clients: %w", err)
		}
		c.log.Info("idle clients connected", zap.Int("n", c.o.idle), zap.Duration("in", time.Since(t)))
	}
	ph, err := c.begin(ctx, "edge-kill", fmt.Sprintf("an edge holding %d idle clients and half the devices SIGKILLed, restarted once they moved", c.o.idle))
	if err != nil {
		return ph, err
	}
	victim.kill()
	if idle != nil {
		// The idle clients move to the other edge: time until all are
		// connected again.
		for deadline := time.Now().Add(90 * time.Second); ; {
			n, err := idleCount(idle.http)
			if err == nil && n >= c.o.idle {
				c.note(&ph, "all %d idle clients connected again %.1f s after the kill", c.o.idle, time.Since(ph.FaultAt).Seconds())
				break
			}
			if time.Now().After(deadline) {
				c.note(&ph, "idle clients: %d of %d connected 90 s after the kill", n, c.o.idle)
				break
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return ph, err
			}
		}
	}
	if err := sleep(ctx, max(0, c.o.down-time.Since(ph.FaultAt))); err != nil {
		return ph, err
	}
	if err := c.pl.restart(ctx, victim); err != nil {
		return ph, err
	}
	return ph, c.recover(ctx, &ph)
}

func (c *chaos) fanoutKill(ctx context.Context) (phaseResult, error) {
	ph, err := c.begin(ctx, "fanout-kill", fmt.Sprintf("a fan-out SIGKILLed under load (mid-batch), down %v, restarted", c.o.down))
	if err != nil {
		return ph, err
	}
	if err := c.killNode(ctx, &ph, c.pl.fanouts[0], c.o.down); err != nil {
		return ph, err
	}
	return ph, c.recover(ctx, &ph)
}

func (c *chaos) projectorKill(ctx context.Context) (phaseResult, error) {
	ph, err := c.begin(ctx, "projector-kill", "a projector SIGKILLed under load (mid-batch), down 5 s, restarted")
	if err != nil {
		return ph, err
	}
	if err := c.killNode(ctx, &ph, c.pl.projs[0], 5*time.Second); err != nil {
		return ph, err
	}
	return ph, c.recover(ctx, &ph)
}

func executable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Abs(p)
}
