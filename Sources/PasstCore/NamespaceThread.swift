// Running a piece of set-up inside the target network namespace, on a short-lived thread.
//
// Theory of operation: once pasta has its own user namespace it holds capabilities over the
// namespaces it created, but none over the init network namespace it started in, so a thread
// that setns()es into the target can never come back (EPERM): `TargetNetworkNamespace.run`,
// which steps in and out on the calling thread, only works for a process that stayed in the init
// user namespace. Upstream solves this with NS_CALL (a clone sharing memory and descriptors that
// enters the namespace and exits); here a fresh pthread enters the target, runs the body and
// ends, while the main thread stays in the init namespace. Descriptors are shared by all threads,
// so a tap device, netlink or other socket created there is usable from the main thread and
// stays bound to the target's stack. The body must not touch anything the main thread uses
// meanwhile (the main thread only waits in pthread_join). Control path only: this allocates.
// After the first such thread the process is no longer "single-threaded" for unshare(2) and
// setns(2) of user namespaces, so those must happen before.
import CPasstShim
import PasstSys
#if canImport(Glibc)
import Glibc
#endif

/// Runs closures inside a network namespace on a dedicated, short-lived thread.
enum NamespaceThread {
    /// What the thread is given and what it hands back.
    private final class Job {
        let namespace: Int32
        let body: () -> Void
        var enterError: Int32 = 0

        /// A job entering `namespace` and running `body`.
        init(namespace: Int32, body: @escaping () -> Void) {
            self.namespace = namespace
            self.body = body
        }
    }

    /// Runs `body` on a new thread inside the network namespace of `namespace`; returns its
    /// result, or throws the errno of a failed setns(2) or pthread_create(3).
    static func run<R>(in namespace: borrowing FileDescriptor, _ body: () -> R) throws(SyscallError) -> R {
        var result: R?
        let error: Int32 = withoutActuallyEscaping(body) { body in
            let job = Job(namespace: namespace.raw) { result = body() }
            let context = Unmanaged.passRetained(job).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                if shim_setns(job.namespace, SHIM_CLONE_NEWNET) != 0 {
                    job.enterError = errno
                } else {
                    job.body()
                }
                return nil
            }, context)
            if created != 0 {
                Unmanaged<Job>.fromOpaque(context).release()
                return created
            }
            pthread_join(thread, nil)
            return job.enterError
        }
        if error != 0 { throw SyscallError(error) }
        return result!
    }
}
