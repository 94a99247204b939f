package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	chinfra "messenger/infra/clickhouse"
	"messenger/infra/natsauth"
	"messenger/services/projector"
	"messenger/streams"
)

// adminFlags are the one-shot commands' own flags.
type adminFlags struct {
	drop   bool // rebuild-history
	repair bool // check-history
}

// admin runs the one-shot commands on the projection.
func admin(ctx context.Context, cmd string, cfg *config, f adminFlags) error {
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	// The projector's identity: its consumers and the dead letters.
	nc, err := dialNATS(cfg, cfg.NATS, natsauth.RoleProjector, "", nil, log, nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	sc := cfg.streams()
	h, err := streams.Open(ctx, js, sc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	chc, err := chConfig(cfg, log)
	if err != nil {
		return err
	}
	conn, err := chinfra.Open(cctx, chc)
	if err != nil {
		return err
	}
	defer conn.Close()
	p, err := projector.New(projector.Config{}, js, h, conn, log, nil)
	if err != nil {
		return err
	}
	switch cmd {
	case "replay-dead-letters":
		rep, err := p.ReplayDeadLetters(ctx, nc)
		if err != nil {
			return err
		}
		fmt.Printf("replayed %d dead letters, %d still failing\n", rep.Replayed, rep.Failed)
		for _, r := range rep.Reasons {
			fmt.Println("  ", r)
		}
		if rep.Failed > 0 {
			return fmt.Errorf("%d dead letters still fail", rep.Failed)
		}
		return nil
	case "rebuild-history":
		if f.drop {
			if err := chinfra.DropAll(cctx, conn, chc); err != nil {
				return err
			}
		}
		if err := chinfra.ApplyAll(cctx, conn, chc); err != nil {
			return err
		}
		if err := projector.ResetConsumers(ctx, h); err != nil {
			return err
		}
		log.Info("projecting every conversation stream from its first event")
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx) }()
		time.Sleep(500 * time.Millisecond) // let the consumers be made again
		err := projector.WaitCaughtUp(ctx, h)
		stop()
		<-done
		if err != nil {
			return err
		}
		fmt.Println("history rebuilt: every conversation stream is projected")
		return nil
	case "check-history":
		return checkHistory(ctx, p, f.repair)
	}
	return nil
}

// checkHistory prints, per partition, the events below the projector's ack
// floor that ClickHouse lacks (and that are no dead letters), repairs them
// with --repair and checks again; it fails while holes remain.
func checkHistory(ctx context.Context, p *projector.Projector, repair bool) error {
	rep, err := p.CheckHistory(ctx, nil, repair)
	printCheck(rep, repair)
	if err != nil {
		return err
	}
	if repair && (rep.Missing() > 0 || rep.Conversations > 0) {
		if rep, err = p.CheckHistory(ctx, nil, false); err != nil {
			return err
		}
		fmt.Println("checked again after the repair:")
		printCheck(rep, false)
	}
	if n := rep.Missing(); n > 0 {
		return fmt.Errorf("%d events missing from ClickHouse", n)
	}
	if rep.Conversations > rep.ConversationsRepaired {
		return fmt.Errorf("%d conversations rows missing or behind", rep.Conversations-rep.ConversationsRepaired)
	}
	return nil
}

func printCheck(rep projector.CheckReport, repair bool) {
	for _, c := range rep.Partitions {
		line := fmt.Sprintf("partition %d: checked up to stream seq %d: %d holes", c.Partition, c.Floor, c.Missing)
		if c.Missing > 0 {
			line += " (" + projector.FormatRuns(c.Holes, 50) + ")"
		}
		if repair {
			line += fmt.Sprintf(", %d repaired", c.Repaired)
		}
		fmt.Println(line)
	}
	line := fmt.Sprintf("conversations: %d rows missing or behind their events", rep.Conversations)
	if repair {
		line += fmt.Sprintf(", %d written again", rep.ConversationsRepaired)
	}
	fmt.Println(line)
}
