package subjects

// Push registration events (services/pushreg), in stream PUSHREG: one
// subject per registration and one per muted conversation, so that the last
// event of each subject is that registration's or mute's state, and a user's
// registrations are one wildcard.
//
//	pushreg.dev.<user>.<id>     register / unregister of registration id
//	pushreg.mute.<user>.<conv>  mute / unmute of conv by user
const (
	PushRegPrefix = "pushreg"
	// PushRegAll matches every push registration event.
	PushRegAll = PushRegPrefix + ".>"
)

// PushRegDevice is the subject of the events of user's registration id.
func PushRegDevice(user, id string) string { return PushRegPrefix + ".dev." + user + "." + id }

// PushRegDevicesOf matches the registration events of user.
func PushRegDevicesOf(user string) string { return PushRegPrefix + ".dev." + user + ".*" }

// PushRegMute is the subject of user's mute events of conv.
func PushRegMute(user, conv string) string { return PushRegPrefix + ".mute." + user + "." + conv }
