package loadgen

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// timerfds are timer file descriptors registered with the runtime's poller: waiting on
// one parks the goroutine (no thread or processor held, unlike a nanosleep, which
// starved the rest of the process), and the poller wakes it when the timer fires, with
// microseconds of slack instead of the poller's whole milliseconds.
var timerfds = sync.Pool{New: func() any {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "timerfd")
}}

// preciseSleep waits d on a timerfd; without one (a kernel that refuses it) it sleeps
// as Go's timers do.
func preciseSleep(d time.Duration) {
	if d <= 0 {
		return
	}
	start := time.Now()
	f, _ := timerfds.Get().(*os.File)
	if f == nil {
		time.Sleep(d)
		return
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	// Not f.Fd(): that would put the descriptor in blocking mode, off the poller.
	var serr error
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) })
	}
	var expirations [8]byte
	if err == nil && serr == nil {
		_, err = f.Read(expirations[:])
	}
	if err != nil || serr != nil {
		_ = f.Close()
		time.Sleep(time.Until(start.Add(d)))
		return
	}
	timerfds.Put(f)
}
