package push

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"go.uber.org/zap"
)

// Config says which providers to build and how they connect. A provider
// whose settings are all empty is not built; one with some of them set and
// others missing is an error.
type Config struct {
	// FCMCredentials is the service-account key file (JSON) of the
	// Firebase project; FCMEndpoint "" is DefaultFCMEndpoint.
	FCMCredentials string
	FCMEndpoint    string
	// APNsKey is the .p8 token-signing key file; APNsKeyID its id, APNsTeamID
	// the developer team, APNsTopic the app's bundle id; APNsEndpoint ""
	// is DefaultAPNsEndpoint.
	APNsKey      string
	APNsKeyID    string
	APNsTeamID   string
	APNsTopic    string
	APNsEndpoint string
	// WebPushVAPIDKey is the VAPID private key file (LoadVAPIDKey);
	// WebPushSubject the operator's contact, mailto: or https:.
	WebPushVAPIDKey string
	WebPushSubject  string
	// AllowHosts may be connected to on any address (host or host:port as
	// in the URL); every other host only on a public address.
	AllowHosts []string
	// CAFile is a PEM file of CAs trusted besides the system's.
	CAFile string
	// Timeout bounds one request to a provider; 0 is DefaultTimeout.
	Timeout time.Duration
}

// ErrHalfConfigured is a provider with some of its settings missing.
var ErrHalfConfigured = errors.New("push: provider half configured")

// Validate reports a half-configured provider.
func (c Config) Validate() error {
	if c.FCMCredentials == "" && c.FCMEndpoint != "" && c.FCMEndpoint != DefaultFCMEndpoint {
		return fmt.Errorf("%w: fcm endpoint without --fcm-credentials", ErrHalfConfigured)
	}
	apns := map[string]string{"--apns-key": c.APNsKey, "--apns-key-id": c.APNsKeyID, "--apns-team-id": c.APNsTeamID, "--apns-topic": c.APNsTopic}
	if err := allOrNone("apns", apns); err != nil {
		return err
	}
	if err := allOrNone("webpush", map[string]string{"--webpush-vapid-key": c.WebPushVAPIDKey, "--webpush-subject": c.WebPushSubject}); err != nil {
		return err
	}
	if c.Timeout < 0 {
		return errors.New("push: negative timeout")
	}
	return nil
}

func allOrNone(what string, settings map[string]string) error {
	var set, missing []string
	for name, v := range settings {
		if v != "" {
			set = append(set, name)
		} else {
			missing = append(missing, name)
		}
	}
	sort.Strings(set)
	sort.Strings(missing)
	if len(set) > 0 && len(missing) > 0 {
		return fmt.Errorf("%w: %s has %v but not %v", ErrHalfConfigured, what, set, missing)
	}
	return nil
}

// New builds the configured providers, by platform (FCM, APNs, WebPush),
// all sharing one HTTPClient. None configured is an empty map.
func New(cfg Config, log *zap.Logger) (map[string]Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := HTTPClient(cfg.AllowHosts, cfg.CAFile, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	out := map[string]Provider{}
	if cfg.FCMCredentials != "" {
		b, err := os.ReadFile(cfg.FCMCredentials)
		if err != nil {
			return nil, fmt.Errorf("fcm credentials: %w", err)
		}
		p, err := NewFCM(b, cfg.FCMEndpoint, client)
		if err != nil {
			return nil, err
		}
		out[FCM] = p
		log.Info("push provider", zap.String("platform", FCM), zap.String("project", p.Project()), zap.String("endpoint", orDefault(cfg.FCMEndpoint, DefaultFCMEndpoint)))
	}
	if cfg.APNsKey != "" {
		b, err := os.ReadFile(cfg.APNsKey)
		if err != nil {
			return nil, fmt.Errorf("apns key: %w", err)
		}
		p, err := NewAPNs(APNsConfig{Key: b, KeyID: cfg.APNsKeyID, TeamID: cfg.APNsTeamID, Topic: cfg.APNsTopic, Endpoint: cfg.APNsEndpoint}, client)
		if err != nil {
			return nil, err
		}
		out[APNs] = p
		log.Info("push provider", zap.String("platform", APNs), zap.String("topic", cfg.APNsTopic), zap.String("endpoint", orDefault(cfg.APNsEndpoint, DefaultAPNsEndpoint)))
	}
	if cfg.WebPushVAPIDKey != "" {
		k, err := LoadVAPIDKey(cfg.WebPushVAPIDKey)
		if err != nil {
			return nil, err
		}
		p, err := NewWebPush(k, cfg.WebPushSubject, client)
		if err != nil {
			return nil, err
		}
		out[WebPush] = p
		log.Info("push provider", zap.String("platform", WebPush), zap.String("subject", cfg.WebPushSubject), zap.String("vapid_public_key", p.VAPIDPublicKey()))
	}
	return out, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
