// A public way to record a stage transition from outside LeffaTraining (the coordinator's
// `stage advance` / `stage set`), stamped with the current time.
import Foundation

extension RunState.Transition {
    public init(now from: String?, to: String, reason: String) {
        self.init(time: timestamp(), from: from, to: to, reason: reason)
    }
}
