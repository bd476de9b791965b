import java.time.Duration;
import java.util.Collection;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.common.Node;

/**
 * Waits until a Kafka broker answers real metadata requests, using Kafka's own admin client.
 *
 * <p>Usage: {@code java -cp <kafka jars> BrokerReady.java <bootstrap> <broker pid> <timeout
 * seconds>}. Exit codes: 0 ready, 2 timed out, 3 the broker process exited, 64 bad usage. A pid
 * of 0 skips the liveness check (for a broker this script did not start).
 */
public final class BrokerReady {
  private static final long ATTEMPT_TIMEOUT_MILLIS = 3_000;
  private static final long PAUSE_MILLIS = 250;

  private BrokerReady() {}

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 3) {
      System.err.println("usage: BrokerReady <bootstrap> <broker pid> <timeout seconds>");
      System.exit(64);
    }
    String bootstrap = args[0];
    long brokerPid = Long.parseLong(args[1]);
    long deadline = System.nanoTime() + (long) (Double.parseDouble(args[2]) * 1e9);
    System.exit(waitUntilReady(bootstrap, brokerPid, deadline));
  }

  private static int waitUntilReady(String bootstrap, long brokerPid, long deadline)
      throws InterruptedException {
    String lastProblem = "no attempt was made";
    Admin admin = Admin.create(adminProperties(bootstrap));
    try {
      while (System.nanoTime() < deadline) {
        if (brokerPid > 0 && !isAlive(brokerPid)) {
          System.err.println("broker process " + brokerPid + " exited while starting");
          return 3;
        }
        try {
          System.out.println(describe(admin));
          return 0;
        } catch (TimeoutException e) {
          lastProblem = "no answer within " + ATTEMPT_TIMEOUT_MILLIS + " ms";
        } catch (ExecutionException e) {
          lastProblem = String.valueOf(e.getCause());
        } catch (IllegalStateException e) {
          lastProblem = e.getMessage();
        }
        Thread.sleep(PAUSE_MILLIS);
      }
      System.err.println("broker at " + bootstrap + " did not answer: " + lastProblem);
      return 2;
    } finally {
      admin.close(Duration.ofSeconds(2));
    }
  }

  /** One round of metadata requests; throws unless the broker answered all of them. */
  private static String describe(Admin admin)
      throws ExecutionException, TimeoutException, InterruptedException {
    DescribeClusterResult cluster = admin.describeCluster();
    String clusterId = cluster.clusterId().get(ATTEMPT_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
    Collection<Node> brokers = cluster.nodes().get(ATTEMPT_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
    if (brokers.isEmpty()) {
      throw new IllegalStateException("the cluster lists no broker yet");
    }
    Set<String> topics =
        admin
            .listTopics(new ListTopicsOptions().listInternal(true))
            .names()
            .get(ATTEMPT_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS);
    return "cluster " + clusterId + ", brokers " + brokers + ", " + topics.size() + " topic(s)";
  }

  private static boolean isAlive(long pid) {
    Optional<ProcessHandle> process = ProcessHandle.of(pid);
    return process.map(ProcessHandle::isAlive).orElse(false);
  }

  private static Properties adminProperties(String bootstrap) {
    Properties properties = new Properties();
    properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    properties.put(AdminClientConfig.CLIENT_ID_CONFIG, "toloka-bridge-broker-ready");
    properties.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 2_000);
    properties.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 3_000);
    properties.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, 100);
    properties.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);
    return properties;
  }
}
