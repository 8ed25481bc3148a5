# A Nomad 0.8 job (HCL1) for the rkt driver, as it ran under Nomad. Convert and apply it:
#
#   rkt-operator convert --node node-a --node node-b examples/nomad/kv.nomad | kubectl apply -f -
#
# Two instances (count = 2) of the demo's key-value server, one per node, each publishing
# the image's "client" port on host port 12380.
job "kv" {
  datacenters = ["dc1"]
  type        = "service"

  group "store" {
    count = 2

    task "server" {
      driver       = "rkt"
      kill_timeout = "10s"

      config {
        image = "example.com/kv-server:1.0"
        port_map {
          client = "client"
        }
        dns_servers = ["host"]
      }

      env {
        KV_DATA_DIR = "${NOMAD_TASK_DIR}/data"
      }

      resources {
        cpu    = 250
        memory = 64
        network {
          port "client" {
            static = 12380
          }
        }
      }
    }
  }
}
