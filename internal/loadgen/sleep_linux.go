package loadgen

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacer is one dispatcher's precise timer: a timer file descriptor registered with the
// runtime's poller. Waiting on it parks the goroutine (no thread or processor held,
// unlike a nanosleep, which starved the rest of the process), and the poller wakes it
// when the timer fires, with microseconds of slack instead of whole milliseconds.
// Without one (a kernel that refuses it) it sleeps as Go's timers do.
type pacer struct{ f *os.File }

func newPacer() *pacer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return &pacer{}
	}
	return &pacer{f: os.NewFile(uintptr(fd), "timerfd")}
}

// Close releases the timer.
func (p *pacer) Close() {
	if p.f != nil {
		_ = p.f.Close()
	}
}

// sleep waits d; one goroutine at a time.
func (p *pacer) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	if p.f == nil {
		time.Sleep(d)
		return
	}
	start := time.Now()
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	// Not f.Fd(): that would put the descriptor in blocking mode, off the poller.
	var serr error
	rc, err := p.f.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) })
	}
	var expirations [8]byte
	if err == nil && serr == nil {
		_, err = p.f.Read(expirations[:])
	}
	if err != nil || serr != nil {
		_ = p.f.Close()
		p.f = nil // from now on, Go's timers
		time.Sleep(time.Until(start.Add(d)))
	}
}
