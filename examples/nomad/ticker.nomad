# A Nomad 0.8 job (HCL1) for the rkt driver, as it ran under Nomad. Convert and apply it:
#
#   rkt-operator convert --node node-a --node node-b examples/nomad/ticker.nomad | kubectl apply -f -
#
# Two instances (count = 2), one per node: each appends a line to a file in its task
# directory every few seconds, named from the variables the driver gave every task.
job "ticker" {
  datacenters = ["dc1"]
  type        = "service"

  group "clock" {
    count = 2

    task "tick" {
      driver       = "rkt"
      kill_timeout = "10s"

      config {
        image   = "example.com/busybox:1.35"
        command = "/bin/sh"
        args    = ["-c", "while true; do echo \"${NOMAD_ALLOC_NAME} $(date)\" >> ${TICKS_FILE}; sleep ${INTERVAL}; done"]
      }

      env {
        TICKS_FILE = "${NOMAD_TASK_DIR}/ticks"
        INTERVAL   = "5"
      }

      resources {
        cpu    = 100
        memory = 32
      }

      logs {
        max_files     = 3
        max_file_size = 5
      }
    }
  }
}
