# A Nomad >= 1.0 batch job (HCL2): runs once, prints its allocation's identity.
#
#   rkt-operator convert --node node-b examples/nomad/hello.nomad | kubectl apply -f -
job "hello" {
  type = "batch"

  group "greet" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "echo" {
      driver = "rkt"

      config {
        image   = "example.com/busybox:1.35"
        command = "/bin/sh"
        args    = ["-c", "echo hello from ${NOMAD_TASK_NAME}, alloc ${NOMAD_ALLOC_NAME}"]
        net     = ["none"]
      }

      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
}
